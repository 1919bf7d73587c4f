/**
 * Whether `view` spans the whole of an `ArrayBuffer` it alone uses, so that its buffer can be
 * transferred (moved) to another thread: transferring the buffer of a view into a larger or
 * shared one (a Buffer from Node's pool, a subarray, a SharedArrayBuffer) would detach memory
 * other views still use, or is not allowed at all.
 */
export function ownsWholeBuffer(view: ArrayBufferView): boolean {
  return view.buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength;
}
