/**
 * Fault injection for `--mode process`: real faults of real client processes, not emulated ones.
 * A selected client *crashes* (SIGKILL right after it was sent the round's head, then a new
 * process with the same identity, data and cache starts, as a restarted site would) or *stalls*
 * (SIGSTOP until the round's deadline has passed, then SIGCONT: a frozen process whose connection
 * stays open). Which client fails in which round is drawn from the run's seed, so a run's faults
 * are reproducible.
 */
import { createRandom } from '../../shared/math/random.ts';

export type ProcessFault = 'crash' | 'stall';

/** The fault of client `client` in round `round`: crash with `dropoutRate`, else stall with `stragglerRate`. */
export function processFault(seed: number, round: number, client: number, rates: { dropoutRate: number; stragglerRate: number }): ProcessFault | null {
  const draw = createRandom(`process-faults-${seed}-${round}-${client}`).nextFloat();
  if (draw < rates.dropoutRate) return 'crash';
  if (draw < rates.dropoutRate + rates.stragglerRate) return 'stall';
  return null;
}

/** A fault that was injected. */
export interface InjectedFault {
  round: number;
  client: number;
  kind: ProcessFault;
}
