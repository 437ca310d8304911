/**
 * The CloudWatch dashboard (deploy/lib/dashboard.ts, deploy/dashboards/cloudwatch.json): created with
 * the collector and only then; every metric a widget searches for is one the collector declares,
 * with exactly the dimensions the widget's schema names, so no panel stays empty. (That each name is
 * one the gateway serves is checked against the real binary: tests/e2e/dashboards.rs.)
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parse } from 'yaml';
import { collectorConfig, METRICS_NAMESPACE } from '../lib/observability';
import { Synthesized, render, synth } from './helpers';

let on: Synthesized;
let off: Synthesized;
before(() => {
  on = synth();
  off = synth({ observability: 'false' });
});

function dashboards(s: Synthesized): any[] {
  return Object.values(s.json.Resources).filter((r) => r.Type === 'AWS::CloudWatch::Dashboard');
}

/** Every `SEARCH('{Namespace,dim...} ... MetricName="x" ...', ...)` of the body. */
function searches(body: any): { namespace: string; dims: string[]; names: string[]; expression: string }[] {
  const out = [];
  for (const widget of body.widgets) {
    for (const row of widget.properties.metrics) {
      for (const m of row) {
        const expression: string | undefined = m.expression;
        const search = expression && /^SEARCH\('\{([^}]*)\}(.*)', '([^']+)', 60\)$/.exec(expression);
        if (!search) continue;
        const [namespace, ...dims] = search[1].split(',');
        const names = [...search[2].matchAll(/MetricName="([^"]+)"/g)].map((x) => x[1]);
        out.push({ namespace, dims, names, expression: expression! });
      }
    }
  }
  return out;
}

describe('CloudWatch dashboard', () => {
  test('one dashboard with the collector, none without it', () => {
    assert.equal(dashboards(on).length, 1);
    assert.equal(dashboards(off).length, 0);
    assert.ok(on.json.Outputs?.DashboardUrl, 'the console link is an output');
  });

  test('every widget reads the stack region and searches the gateway namespace', () => {
    const body = JSON.parse(render(dashboards(on)[0].Properties.DashboardBody));
    assert.ok(body.widgets.length >= 10);
    for (const w of body.widgets) assert.equal(w.properties.region, '${AWS::Region}', w.properties.title);
    const all = searches(body);
    assert.ok(all.length >= 20, `${all.length} searches`);
    for (const s of all) assert.equal(s.namespace, METRICS_NAMESPACE, s.expression);
  });

  test('each searched metric is declared by the collector with exactly those dimensions', () => {
    const config = parse(collectorConfig('eu-west-1', 'group'));
    const declarations: { dimensions: string[][]; metric_name_selectors: string[] }[] =
      config.exporters.awsemf.metric_declarations;
    const body = JSON.parse(render(dashboards(on)[0].Properties.DashboardBody));
    for (const s of searches(body)) {
      assert.ok(s.names.length > 0, s.expression);
      const dims = [...s.dims].sort().join(',');
      for (const name of s.names) {
        const declared = declarations.some((d) =>
          d.metric_name_selectors.some((r) => new RegExp(r).test(name)) &&
          d.dimensions.some((set) => [...set].sort().join(',') === dims));
        assert.ok(declared, `${name} with dimensions [${dims}] is not shipped by the collector: ${s.expression}`);
      }
    }
  });
});
