/**
 * The ADOT collector sidecar (deploy/lib/observability.ts): on by default, off with
 * `-c observability=false`; what it receives, where it sends it, what it may write, and the
 * environment that turns the gateway's OTLP export on.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { COLLECTOR_CONTAINER, collectorConfig } from '../lib/observability';
import { DEFAULT_COLLECTOR_IMAGE } from '../lib/settings';
import {
  Synthesized, gatewayContainer, gatewayEnv, render, roleStatements, single, synth, taskRoleId,
} from './helpers';

let on: Synthesized;
let off: Synthesized;
before(() => {
  on = synth();
  off = synth({ observability: 'false' });
});

function containers(s: Synthesized): any[] {
  const [, task] = single(s.json, 'AWS::ECS::TaskDefinition');
  return task.ContainerDefinitions;
}

function collector(s: Synthesized): any {
  const c = containers(s).find((x) => x.Name === COLLECTOR_CONTAINER);
  assert.ok(c, 'no collector container');
  return c;
}

describe('observability on (the default)', () => {
  test('a non-essential ADOT collector beside the gateway, pinned, read-only, self-checked', () => {
    assert.deepEqual(containers(on).map((c) => c.Name).sort(), ['gateway', COLLECTOR_CONTAINER].sort());
    const c = collector(on);
    assert.equal(c.Image, DEFAULT_COLLECTOR_IMAGE);
    assert.match(c.Image, /^public\.ecr\.aws\/aws-observability\/aws-otel-collector:v\d+\.\d+\.\d+$/);
    assert.equal(c.Essential, false);
    assert.equal(c.ReadonlyRootFilesystem, true);
    assert.deepEqual(c.HealthCheck.Command, ['CMD', '/healthcheck']);
    assert.equal(c.LogConfiguration.Options.mode, 'non-blocking');
    assert.equal(gatewayContainer(on.json).Essential, true);
  });

  test('the gateway starts after the collector, so it stops first and flushes its spans', () => {
    assert.deepEqual(gatewayContainer(on.json).DependsOn, [
      { ContainerName: COLLECTOR_CONTAINER, Condition: 'START' },
    ]);
  });

  test('the gateway exports OTLP to the sidecar on loopback, sampling traces at the ratio', () => {
    const env = gatewayEnv(on.json);
    assert.equal(env.SAGEGATE_OTLP_ENABLED, 'true');
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://127.0.0.1:4318');
    assert.equal(env.OTEL_TRACES_SAMPLER_ARG, '0.01');
    assert.equal(gatewayEnv(synth({ traceSampleRatio: '0.25' }).json).OTEL_TRACES_SAMPLER_ARG, '0.25');
    assert.throws(() => synth({ traceSampleRatio: '2' }), /traceSampleRatio/);
  });

  test('callers choose no sampling: plain traceidratio, and trust in a caller flag off by name', () => {
    // A caller's sampled flag would make the gateway record (and X-Ray bill) a trace at the
    // caller's wish: DESIGN.md's edge rules give a caller no control over cost.
    const env = gatewayEnv(on.json);
    assert.equal(env.OTEL_TRACES_SAMPLER, 'traceidratio');
    assert.ok(!env.OTEL_TRACES_SAMPLER.startsWith('parentbased_'));
    assert.equal(env.SAGEGATE_OTLP_TRUST_CALLER_SAMPLING, 'false');
  });

  test('config: OTLP in and Prometheus scrape on loopback only; X-Ray and EMF out', () => {
    const env: Record<string, string> = {};
    for (const { Name, Value } of collector(on).Environment) env[Name] = render(Value);
    const config = env.AOT_CONFIG_CONTENT;
    assert.ok(config.includes('endpoint: 127.0.0.1:4318'), config);
    assert.ok(config.includes('targets: ["127.0.0.1:9090"]'), config);
    assert.ok(!config.includes('0.0.0.0'), 'no receiver may listen beyond the task');
    assert.match(config, /exporters: \[awsxray\]/);
    assert.match(config, /exporters: \[awsemf\]/);
    assert.ok(config.includes('region: ${AWS::Region}'), config);
    // The EMF log group is the stack's own, kept 30 days.
    const group = /log_group_name: \$\{(\w+)\}/.exec(config)?.[1];
    assert.ok(group, config);
    assert.equal(on.json.Resources[group!].Type, 'AWS::Logs::LogGroup');
    assert.equal(on.json.Resources[group!].Properties.RetentionInDays, 30);
  });

  test('CloudWatch metrics have bounded dimensions: never a key id', () => {
    const config = collectorConfig('us-east-1', 'group');
    const dims = [...config.matchAll(/dimensions: \[\[([^\]]*)\]\]/g)].map((m) => m[1]);
    assert.ok(dims.length >= 4, config);
    for (const d of dims) assert.ok(!d.includes('key_id'), d);
    assert.match(config, /dimension_rollup_option: NoDimensionRollup/);
  });

  test('every CloudWatch metric deploy/observability.md lists is shipped, with its dimensions', () => {
    const config = collectorConfig('us-east-1', 'group');
    const doc = readFileSync(join(__dirname, '..', 'observability.md'), 'utf8');
    const table = doc.split('CloudWatch metrics in namespace `Sagegate`')[1].split('\n\n')[1];
    const rows = table.split('\n').filter((l) => l.startsWith('| `sagegate_'));
    assert.ok(rows.length >= 8, table);
    // Each declaration: its dimension sets and the metrics it selects.
    const declarations = [...config.matchAll(/- dimensions: (.*)\n\s+metric_name_selectors: \[(.*)\]/g)];
    for (const row of rows) {
      const names = [...row.split('|')[1].matchAll(/`sagegate_(\w+)`/g)].map((m) => m[1]);
      for (const name of names) {
        const selector = name.endsWith('_total') ? `"^sagegate_${name.slice(0, -6)}(_total)?$"` : `"^sagegate_${name}$"`;
        const found = declarations.filter((d) => d[2].split(', ').includes(selector));
        assert.equal(found.length, 1, `sagegate_${name}: ${selector} in one declaration of\n${config}`);
        const dims = row.split('|')[2].trim();
        if (dims === 'none') assert.equal(found[0][1], '[[]]', `sagegate_${name}`);
        for (const dim of dims.match(/\b(stage|route|status_class|variant|error_type|result|endpoint|decision)\b/g) ?? []) {
          assert.ok(found[0][1].includes(dim), `sagegate_${name}: ${dim} in ${found[0][1]}`);
        }
      }
    }
  });

  test('the task role may write traces to X-Ray and events to the metrics log group only', () => {
    const statements = roleStatements(on.json, taskRoleId(on.json));
    const xray = statements.filter((s) => s.actions.some((a) => a.startsWith('xray:')));
    assert.deepEqual(xray.flatMap((s) => s.actions).sort(), ['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
    const logsWrites = statements.filter((s) => s.actions.some((a) => a.startsWith('logs:')));
    assert.deepEqual(
      logsWrites.flatMap((s) => s.actions).sort(),
      ['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'],
    );
    for (const r of logsWrites.flatMap((s) => s.resources)) {
      assert.match(r, /^\$\{GatewayMetricsLogs\w+\.Arn\}$/);
    }
    assert.deepEqual(
      [...new Set(statements.flatMap((s) => s.actions))].sort(),
      [
        'logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents', 's3:GetObject',
        'sagemaker:InvokeEndpoint', 'sagemaker:InvokeEndpointWithResponseStream', 'xray:PutTelemetryRecords',
        'xray:PutTraceSegments',
      ],
    );
  });
});

describe('observability off (-c observability=false)', () => {
  test('no sidecar, no OTLP variables, no X-Ray or logs permissions', () => {
    assert.deepEqual(containers(off).map((c) => c.Name), ['gateway']);
    const env = gatewayEnv(off.json);
    for (const name of Object.keys(env)) assert.ok(!name.startsWith('OTEL_'), name);
    assert.equal(env.SAGEGATE_OTLP_ENABLED, undefined);
    assert.equal(gatewayContainer(off.json).DependsOn, undefined);
    const actions = roleStatements(off.json, taskRoleId(off.json)).flatMap((s) => s.actions);
    assert.ok(!actions.some((a) => a.startsWith('xray:') || a.startsWith('logs:')), actions.join(','));
  });
});
