import { describe, expect, it } from 'vitest';
import { escapeXml, niceTicks, renderBarChart, renderLineChart } from '../../../scripts/simulation/svg-chart.ts';

const count = (text: string, needle: string): number => text.split(needle).length - 1;

describe('escapeXml', () => {
  it('escapes the five XML special characters', () => {
    expect(escapeXml(`<a href="x">Tom & Jerry's</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;');
  });
});

describe('niceTicks', () => {
  it('picks 1-2-5 steps that cover the range', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    // 100 / 4 = 25 rounds up to the next 1-2-5 step, 50.
    expect(niceTicks(0, 100, 4)).toEqual([0, 50, 100]);
    expect(niceTicks(0.3, 0.7, 4)).toEqual([0.3, 0.4, 0.5, 0.6, 0.7]);
    expect(niceTicks(3, 3)).toEqual([3]);
    expect(niceTicks(Number.NaN, 1)).toEqual([]);
  });
});

describe('renderLineChart', () => {
  it('draws one polyline per series, reference lines dashed with labels, and escapes all text', () => {
    // Prepare
    const svg = renderLineChart({
      title: 'Accuracy <fed> & "co"',
      xLabel: 'round <x>',
      yLabel: "y's",
      yRange: 'unit',
      series: [
        { name: 'fed<avg>', points: [{ x: 1, y: 0.5 }, { x: 2, y: 0.7 }, { x: 3, y: Number.NaN }, { x: 4, y: 0.8 }] },
        { name: 'scratch & co', points: [{ x: 1, y: 0.2 }, { x: 4, y: 0.6 }], dashed: true },
      ],
      references: [{ label: 'central<ized>', y: 0.9, band: { low: 0.85, high: 0.95 } }],
    });
    // Assert
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(count(svg, '<polyline')).toBe(2);
    expect(svg).toContain('Accuracy &lt;fed&gt; &amp; &quot;co&quot;');
    expect(svg).toContain('fed&lt;avg&gt;');
    expect(svg).toContain('scratch &amp; co');
    expect(svg).toContain('central&lt;ized&gt; 0.9');
    expect(svg).toContain('round &lt;x&gt;');
    expect(svg).not.toMatch(/<(fed|x|ized)>/);
    expect(svg).toContain('stroke-dasharray');
    // The NaN point is skipped: the first polyline has three coordinate pairs.
    const firstPoints = /<polyline points="([^"]+)"/.exec(svg)![1]!;
    expect(firstPoints.split(' ')).toHaveLength(3);
    // [0, 1] range: ticks 0 … 1.
    expect(svg).toContain('>0.0<');
    expect(svg).toContain('>1.0<');
  });

  it('omits the namespace unless standalone, and escapes colours', () => {
    const inline = renderLineChart({ title: 't', series: [{ name: 's', points: [{ x: 0, y: 1 }], color: 'red" onload="x' }] });
    expect(inline).not.toContain('http');
    expect(inline).not.toContain('onload="x');
    expect(renderLineChart({ title: 't', series: [], standalone: true })).toContain('xmlns="http://www.w3.org/2000/svg"');
  });

  it('renders an empty chart with a "no data" note instead of throwing', () => {
    const svg = renderLineChart({ title: 'empty', series: [{ name: 'a', points: [] }] });
    expect(count(svg, '<polyline')).toBe(0);
    expect(svg).toContain('no data');
  });

  it('uses the custom formatter on ticks and a fixed range', () => {
    const svg = renderLineChart({
      title: 'bytes',
      yRange: [0, 2000],
      formatY: (v) => `${v / 1000} kB`,
      series: [{ name: 'up', points: [{ x: 1, y: 500 }, { x: 2, y: 1500 }] }],
    });
    expect(svg).toContain('>2 kB<');
    expect(svg).toContain('>0 kB<');
  });
});

describe('renderBarChart', () => {
  it('stacks one rect per non-zero value and labels the legend', () => {
    const svg = renderBarChart({
      title: 'Clients <per> round',
      categories: [1, 2, 3],
      stacks: [
        { name: 'aggregated', values: [8, 9, 10] },
        { name: 'dropped & late', values: [2, 1, 0] },
      ],
    });
    // 5 bar segments + 2 legend swatches + 1 background.
    expect(count(svg, '<rect')).toBe(8);
    expect(svg).toContain('dropped &amp; late');
    expect(svg).toContain('Clients &lt;per&gt; round');
  });

  it('handles hundreds of categories by thinning labels', () => {
    const categories = Array.from({ length: 500 }, (_, i) => i + 1);
    const svg = renderBarChart({ title: 'many', categories, stacks: [{ name: 'n', values: categories.map(() => 1) }] });
    expect(count(svg, 'text-anchor="middle" font-size="11"')).toBeLessThan(30);
  });
});
