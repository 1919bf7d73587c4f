import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { buildHead, setHeadWeights, getHeadWeights, type HeadSpec } from '../../shared/model/head.ts';
import { exportTransferModel, type ExportOptions } from '../../shared/model/export.ts';
import { FedtlError } from '../../shared/core/errors.ts';

/** Exports base + the federated head's weights as one stock TF.js model directory; returns its path. */
export async function exportFederatedModel(
  base: FrozenBase,
  headSpec: HeadSpec,
  weights: Float32Array,
  dir: string,
  classNames?: readonly string[],
  extra: Record<string, unknown> = {},
  describe: Pick<ExportOptions, 'featureColumns'> = {},
): Promise<string> {
  const head = buildHead(base.embeddingSize, headSpec);
  try {
    const manifest = getHeadWeights(head).manifest;
    if (manifest.parameterCount !== weights.length) throw new FedtlError('BAD_SHAPE', 'weights do not fit the head spec');
    setHeadWeights(head, { manifest, data: weights });
    const names = classNames ?? Array.from({ length: headSpec.classes }, (_, i) => `class-${i}`);
    const result = await exportTransferModel(base, head, dir, { classNames: names, headSpec, extra, ...describe });
    return result.dir;
  } finally {
    head.dispose();
  }
}
