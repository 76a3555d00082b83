/**
 * What a cell's state says: its label beside the prompt and its words on hover.
 *
 * A cell's lasting state is the record `nbcache run` and the kernel write into
 * `cell.metadata.nbcache` ({outcome, why, seconds}); `running` and `stale` are
 * shown over it while the kernel says so.
 */

export type State =
  | 'restored'
  | 'ran'
  | 'memory'
  | 'always'
  | 'uncached'
  | 'running'
  | 'stale';

/** A cell's `metadata.nbcache`, as `CellOutcome.record` writes it. */
export interface IRecord {
  outcome: string;
  why?: string;
  seconds?: number;
}

/** The state of each outcome `nbcache run` and the kernel write. */
const BY_OUTCOME: { [outcome: string]: State } = {
  restored: 'restored',
  ran: 'ran',
  'kept in memory': 'memory',
  'always runs': 'always',
  uncached: 'uncached',
  'not cached': 'uncached'
};

/** The state a record says, or null (a failed cell, one a run did not reach). */
export function stateOf(record: unknown): State | null {
  if (!record || typeof record !== 'object') {
    return null;
  }
  const outcome = (record as IRecord).outcome;
  return typeof outcome === 'string' ? (BY_OUTCOME[outcome] ?? null) : null;
}

/** Seconds as the status line says them: `0.4 s`, `12 s`, `3 min`, `2.5 h`. */
export function duration(seconds: number): string {
  if (seconds < 10) {
    return `${Math.max(seconds, 0).toFixed(1)} s`;
  }
  if (seconds < 90) {
    return `${Math.round(seconds)} s`;
  }
  if (seconds < 5400) {
    return `${Math.round(seconds / 60)} min`;
  }
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** What is shown of a cell: its short label (lines) and its words on hover. */
export interface IShown {
  state: State;
  label: string[];
  hover: string;
}

/** Progress of a background cell: steps done and the total, if known. */
export type Progress = [number, number | null];

function withWhy(head: string, why: string | undefined): string {
  return why ? `${head}: ${why}` : head;
}

/** The label and hover of a cell with `record`, or running, or stale. */
export function shown(
  record: IRecord | null,
  running: Progress | null,
  staleWhy: string | null
): IShown | null {
  if (running) {
    const [done, total] = running;
    const part =
      total && total > 0
        ? `${Math.min(100, Math.floor((100 * done) / total))}%`
        : done > 0
          ? `${done} steps`
          : '';
    const label = part ? ['running', part] : ['running'];
    const steps = total ? `${done} of ${total} steps` : `${done} steps`;
    return { state: 'running', label, hover: `running in the background: ${steps}` };
  }
  const state = stateOf(record);
  if (staleWhy !== null) {
    return {
      state: 'stale',
      label: ['stale'],
      hover: withWhy('stale: it would run again', staleWhy)
    };
  }
  if (state === null || record === null) {
    return null;
  }
  const seconds = typeof record.seconds === 'number' ? record.seconds : null;
  const took = seconds === null ? '' : ` in ${duration(seconds)}`;
  switch (state) {
    case 'restored': {
      const saved = seconds === null ? '' : `saved ${duration(seconds)}`;
      return {
        state,
        label: saved ? ['restored', saved] : ['restored'],
        hover: withWhy(`restored${saved ? `, ${saved}` : ''}`, record.why)
      };
    }
    case 'ran':
      return {
        state,
        label: ['ran, stored'],
        hover: withWhy(`ran${took} and stored`, record.why)
      };
    case 'memory':
      return {
        state,
        label: ['in memory'],
        hover: withWhy(`ran${took}, kept in memory`, record.why)
      };
    case 'always':
      return {
        state,
        label: ['always runs'],
        hover: withWhy(`always runs (ran${took})`, record.why)
      };
    default:
      return { state, label: ['uncached'], hover: withWhy('ran uncached', record.why) };
  }
}

/** A label as a CSS string for `content:`, its lines apart. */
export function cssString(lines: string[]): string {
  const quoted = lines.map(line => line.replace(/["\\\n]/g, ' ')).join('\\A ');
  return `"${quoted}"`;
}
