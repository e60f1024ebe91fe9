/**
 * The contract between the `meshlimit` command and the modules that add commands:
 * each module exports a `commands` record, and src/cli/index.ts merges the records.
 */
export interface CliIO {
  /** Writes a line to standard output (machine-readable results go here). */
  out(line: string): void
  /** Writes a line to standard error (progress, warnings, errors). */
  err(line: string): void
  /** Environment variables (process.env in production, a plain object in tests). */
  env: Record<string, string | undefined>
}

export interface CliCommand {
  /** One line for `meshlimit --help`. */
  summary: string
  /** Usage text for `meshlimit <command> --help`. */
  usage: string
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: string[], io: CliIO): Promise<number>
}
