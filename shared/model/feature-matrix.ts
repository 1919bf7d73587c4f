/** Embeddings of a data set, row-major: `rows` examples of `cols` values. Plain data, no tensors. */
export interface FeatureMatrix {
  values: Float32Array;
  rows: number;
  cols: number;
}

/** Rows `indices` of a matrix, copied into a new matrix. */
export function selectRows(matrix: FeatureMatrix, indices: ArrayLike<number>): FeatureMatrix {
  const out = new Float32Array(indices.length * matrix.cols);
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i]!;
    out.set(matrix.values.subarray(row * matrix.cols, (row + 1) * matrix.cols), i * matrix.cols);
  }
  return { values: out, rows: indices.length, cols: matrix.cols };
}
