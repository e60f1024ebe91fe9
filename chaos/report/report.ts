import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { Scenario } from '../scenario.js'
import type { Marker, Series, Summary } from '../summary.js'

/**
 * The per-run report: Markdown with the summary beside the bounds, and an SVG chart of
 * the charted key's admissions per window against its limit, with fault markers. The
 * chart is a Vega-Lite spec compiled to Vega and rendered by Vega's headless view (no
 * DOM, no canvas): a charting library draws the axes, scales and legend.
 */

const MARKER_COLORS: Record<Marker['kind'], string> = {
  partition: '#d62728', heal: '#2ca02c', crash: '#ff7f0e', restart: '#9467bd', join: '#1f77b4', leave: '#8c564b'
}

/** Rolling sums over the last `n` buckets. */
function rolling (xs: number[], n: number): number[] {
  const out = new Array<number>(xs.length)
  let sum = 0
  for (let i = 0; i < xs.length; i++) {
    sum += xs[i]
    if (i >= n) sum -= xs[i - n]
    out[i] = sum
  }
  return out
}

/** The Vega-Lite spec of a run's chart. */
export function chartSpec (series: Series, markers: Marker[], title: string): TopLevelSpec {
  const n = Math.max(1, Math.round(series.windowMs / series.bucketMs))
  const admitted = rolling(series.admitted, n)
  const offered = rolling(series.offered, n)
  const rows: Array<{ t: number, series: string, value: number }> = []
  for (let i = 0; i < admitted.length; i++) {
    const t = ((i + 1) * series.bucketMs) / 1000
    rows.push({ t, series: 'admitted', value: admitted[i] }, { t, series: 'offered', value: offered[i] }, { t, series: 'limit', value: series.limit })
  }
  const events = markers.map(m => ({ t: m.atMs / 1000, kind: m.kind, label: m.label }))
  const kinds = [...new Set(events.map(e => e.kind))]
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: `key ${series.key} (${series.domain === '*' ? 'global' : series.domain}), ${series.limitName}: requests in the last ${series.windowMs} ms` },
    width: 720,
    height: 280,
    resolve: { scale: { color: 'independent', stroke: 'independent' } },
    layer: [
      {
        data: { values: rows },
        mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 'simulated seconds since traffic start' },
          y: { field: 'value', type: 'quantitative', title: `requests per ${series.windowMs} ms window` },
          color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['admitted', 'offered', 'limit'], range: ['#1f77b4', '#bbbbbb', '#000000'] } },
          strokeDash: { field: 'series', type: 'nominal', legend: null, scale: { domain: ['admitted', 'offered', 'limit'], range: [[1, 0], [2, 2], [6, 3]] } }
        }
      },
      ...(events.length === 0
        ? []
        : [{
            data: { values: events },
            mark: { type: 'rule' as const, strokeWidth: 1 },
            encoding: {
              x: { field: 't', type: 'quantitative' as const },
              stroke: { field: 'kind', type: 'nominal' as const, title: 'event', scale: { domain: kinds, range: kinds.map(k => MARKER_COLORS[k as Marker['kind']]) } }
            }
          }, {
            data: { values: events },
            mark: { type: 'text' as const, align: 'left' as const, dx: 3, dy: -4, fontSize: 9, angle: 0, baseline: 'top' as const },
            encoding: {
              x: { field: 't', type: 'quantitative' as const },
              y: { value: 0 },
              text: { field: 'label', type: 'nominal' as const },
              color: { field: 'kind', type: 'nominal' as const, legend: null, scale: { domain: kinds, range: kinds.map(k => MARKER_COLORS[k as Marker['kind']]) } }
            }
          }])
    ]
  } as TopLevelSpec
}

/** Renders a Vega-Lite spec to SVG text, headless. */
export async function renderSvg (spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const pct = (x: number | null): string => x === null ? 'never' : `${x}%`
const ms = (x: number | null): string => x === null ? 'never' : `${x} ms`

/** The Markdown of a run's report (`svgName` is the chart file beside it). */
export function reportMarkdown (s: Scenario, sum: Summary, svgName: string, command: string): string {
  const v = sum.violations.length === 0
    ? 'None: every invariant held.'
    : sum.violations.map(x => `- **${x.invariant}** (${x.count})${x.needs !== undefined ? ` — expected to hold once **${x.needs}** lands` : ''}: ${x.detail}`).join('\n')
  const w = sum.worstKey
  const terms = w === null ? '' : Object.entries(w.terms).map(([k, x]) => `${k} ${x}`).join(', ')
  return `# Chaos run: ${sum.scenario}, seed ${sum.seed}

${s.description.trim()}

Reproduce: \`${command}\`

![admitted per window vs limit](${svgName})

| measure | value |
|---|---|
| nodes x regions | ${sum.nodes} x ${sum.regions} |
| simulated seconds (traffic + quiet) | ${sum.simulatedSeconds} |
| requests / admitted / denied | ${sum.requests} / ${sum.admitted} / ${sum.denied} |
| over-admission, max per key and window | ${pct(sum.overAdmissionMaxPct)} |
| over-admission, mean over contended windows | ${pct(sum.overAdmissionMeanPct)} |
| bound (docs/accuracy.md), largest over keys | ${pct(sum.boundPct)} |
| worst key | ${w === null ? 'none' : `${w.key} (${w.domain === '*' ? 'global' : w.domain}): ${w.overAdmissionPct}% against its bound ${w.boundPct}%`} |
| bound terms of the worst key (units) | ${terms} |
| false denials (of requests under the limit) | ${pct(sum.falseDenialPct)} |
| false denials of under-limit clients | ${sum.underLimitFalseDenialPct === null ? 'no such client' : pct(sum.underLimitFalseDenialPct)} |
| gossip convergence p50 / p99 | ${ms(sum.convergenceP50Ms)} / ${ms(sum.convergenceP99Ms)} (${sum.unconvergedPct}% never) |
| convergence after the last request | ${ms(sum.convergenceAfterTrafficMs)} |
| convergence after each heal | ${sum.convergenceAfterHealMs.length === 0 ? 'no heal' : sum.convergenceAfterHealMs.map(ms).join(', ')} |
| upload per node | ${sum.bytesPerNodePerSec} B/s (payload ${sum.payloadBytesPerNodePerSec} B/s) |
| messages published / copies / delivered | ${sum.messages.published} / ${sum.messages.copies} / ${sum.messages.delivered} |
| copies lost / cut / duplicated / reordered / rejected | ${sum.messages.lost} / ${sum.messages.cut} / ${sum.messages.duplicated} / ${sum.messages.reordered} / ${sum.messages.rejected} |
| counts lost / lost with crashed processes | ${sum.countsLost} / ${sum.countsLostAtCrash} |
| lagging cells in running audits (dropped, blank start, partitioned, clock skew) | ${sum.lagging.dropped}, ${sum.lagging.blankStart}, ${sum.lagging.partitioned}, ${sum.lagging.clockSkew} |

## Invariants

${v}
`
}

/** Writes `<dir>/<scenario>-seed<seed>.md` and `.svg`; returns the Markdown path. */
export async function writeReport (dir: string, s: Scenario, sum: Summary, series: Series, markers: Marker[], command: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  const base = `${sum.scenario}-seed${sum.seed}`
  const svg = await renderSvg(chartSpec(series, markers, `${sum.scenario}, seed ${sum.seed}`))
  await writeFile(join(dir, `${base}.svg`), svg)
  const md = join(dir, `${base}.md`)
  await writeFile(md, reportMarkdown(s, sum, `${base}.svg`, command))
  return md
}
