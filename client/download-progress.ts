/**
 * The base download's progress lines. A line is printed each time the download crosses into a new
 * tenth, and it states the true share done (`33%`), never a rounded-down tenth: with chunks larger
 * than a tenth of the base, tenths are crossed several at a time, and printing `10%` steps then
 * made the count appear to skip (`30%`, `60%`, `100%`). The last line is always 100 %.
 */
export class DownloadProgress {
  readonly #label: string;
  #shownTenth = 0;

  /** @param label what is downloading, @default 'base download' */
  constructor(label = 'base download') {
    this.#label = label;
  }

  /** The line to print after `done` of `total` bytes, or null when no new tenth was reached. */
  update(done: number, total: number): string | null {
    const share = total > 0 ? Math.min(1, done / total) : 1;
    const tenth = Math.floor(10 * share);
    if (tenth <= this.#shownTenth) return null;
    this.#shownTenth = tenth;
    return `${this.#label} ${Math.floor(100 * share)}% (${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB)`;
  }
}
