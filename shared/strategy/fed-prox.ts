/**
 * FedProx: Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in
 * Heterogeneous Networks", MLSys 2020 (https://arxiv.org/abs/1812.06127).
 *
 * FedAvg whose clients minimise their loss plus μ/2·‖w − w_round‖²: the proximal term keeps a
 * client's local steps near the round's global head, which limits client drift under skewed data.
 * The server side is FedAvg; only what clients are told changes (`proximalMu` in the fit config,
 * applied by `trainHead`).
 */
import { checkedOption, isNonNegative } from './option-check.ts';
import { FedAvg, type FedAvgOptions } from './fed-avg.ts';
import type { FitConfig } from './strategy.ts';

export const FEDPROX_DEFAULTS = { proximalMu: 0.01 } as const;

export interface FedProxOptions extends FedAvgOptions {
  /** Proximal weight μ ≥ 0 (the paper tries 0.001 … 1). @default 0.01 */
  proximalMu?: number;
}

export class FedProx extends FedAvg {
  /** Its server side is FedAvg's weighted mean, so per-row averaging applies as it does to FedAvg. */
  protected static override readonly takesRowAveraging: boolean = true;
  override readonly name: string = 'fedprox';
  readonly proximalMu: number;

  constructor(options: FedProxOptions = {}) {
    super(options);
    this.proximalMu = checkedOption(options.proximalMu, FEDPROX_DEFAULTS.proximalMu, 'proximalMu', isNonNegative, 'a finite number ≥ 0');
  }

  override fitConfig(round: number): FitConfig {
    return { ...super.fitConfig(round), proximalMu: this.proximalMu };
  }
}
