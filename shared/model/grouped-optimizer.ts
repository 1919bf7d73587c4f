/**
 * One optimizer per learning-rate group, behind the `tf.Optimizer` interface, so a training loop
 * that calls `minimize` gives pretrained layers a smaller learning rate than the new head
 * ("discriminative fine-tuning", Howard & Ruder 2018, https://arxiv.org/abs/1801.06146).
 *
 * Scaling gradients would not do: Adam divides by the gradient's running magnitude, so a scaled
 * gradient gives the same step. Each group therefore gets its own optimizer at `lr × multiplier`.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';

type Factory = (learningRate: number) => tf.Optimizer;
/** One gradient by variable name (tfjs-core's NamedTensor, which the tfjs bundle does not re-export). */
type NamedGradient = { name: string; tensor: tf.Tensor };

/** Routes each variable's gradient to the optimizer of its group. */
export class GroupedOptimizer extends tf.Optimizer {
  static readonly className = 'FedtlGroupedOptimizer';
  readonly #byMultiplier = new Map<number, tf.Optimizer>();
  readonly #multipliers: ReadonlyMap<string, number>;
  readonly #learningRate: number;
  readonly #factory: Factory;

  /**
   * @param multipliers learning-rate multiplier per `tf.Variable` name; variables not listed use 1
   * @param factory makes the optimizer of one group from its learning rate
   */
  constructor(learningRate: number, multipliers: ReadonlyMap<string, number>, factory: Factory) {
    super();
    for (const [name, m] of multipliers) {
      if (!(m > 0 && Number.isFinite(m))) throw new FedtlError('BAD_CONFIG', `learning-rate multiplier of ${name} must be finite and > 0, got ${m}`);
    }
    this.#learningRate = learningRate;
    this.#multipliers = multipliers;
    this.#factory = factory;
  }

  #optimizerFor(multiplier: number): tf.Optimizer {
    let optimizer = this.#byMultiplier.get(multiplier);
    if (!optimizer) {
      optimizer = this.#factory(this.#learningRate * multiplier);
      this.#byMultiplier.set(multiplier, optimizer);
    }
    return optimizer;
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedGradient[]): void {
    const list = Array.isArray(variableGradients) ? variableGradients : Object.entries(variableGradients).map(([name, tensor]) => ({ name, tensor }));
    const groups = new Map<number, NamedGradient[]>();
    for (const item of list) {
      const multiplier = this.#multipliers.get(item.name) ?? 1;
      const group = groups.get(multiplier) ?? [];
      group.push(item);
      groups.set(multiplier, group);
    }
    for (const [multiplier, group] of groups) this.#optimizerFor(multiplier).applyGradients(group);
  }

  override dispose(): void {
    for (const optimizer of this.#byMultiplier.values()) optimizer.dispose();
    this.#byMultiplier.clear();
    super.dispose();
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.#learningRate };
  }
}
