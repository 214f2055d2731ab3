import type { TableSchema } from '@sluice/core';
import { CliCode, CliError } from '../cli-error.js';

/**
 * The columns of a columnar input (Arrow, Parquet) must all be table columns, and the primary
 * key must be one of them. Checked once per input: every row would fail otherwise.
 */
export function checkInputColumns(name: string, schema: TableSchema, columns: readonly string[]): void {
  for (const c of columns) {
    if (!schema.byName.has(c)) {
      throw new CliError(
        CliCode.INVALID_INPUT,
        `${name}: column "${c}" is not in the table (columns: ${schema.columns.map((x) => x.name).join(', ')})`,
        { details: { file: name, column: c } },
      );
    }
  }
  if (!columns.includes(schema.primaryKey)) {
    throw new CliError(
      CliCode.INVALID_INPUT,
      `${name}: the input lacks the primary key column "${schema.primaryKey}"`,
      {
        details: { file: name, column: schema.primaryKey },
      },
    );
  }
}
