/**
 * Rollouts on Fargate: gateway.yaml read from S3 (`gatewayConfig`, `configObject`,
 * `configKmsKeyArn`, `initialConfigFile`; deploy/lib/gateway-config.ts) so a canary step is an
 * upload, and the task role allowed the canary and shadow endpoints (`rolloutEndpoints`) exactly.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { MAX_SEED_BYTES, checkConfigSeed } from '../lib/gateway-config';
import { SHIPPED_CONFIG_FILE } from '../lib/sagegate-stack';
import { readSettings } from '../lib/settings';
import {
  CERT, CfnTemplate, Statement, Synthesized, endpointArn, gatewayEnv, render, resources, roleStatements, synth,
  taskRoleId, thrownMessage,
} from './helpers';

const BUCKET_ARN = '${KeysBucketC65599E5.Arn}';
const OPS_OBJECT = 's3://ops-config-eu/sagegate/prod/gateway.yaml';
const OPS_OBJECT_ARN = 'arn:${AWS::Partition}:s3:::ops-config-eu/sagegate/prod/gateway.yaml';
const KMS_KEY = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const STREAM = 'sagemaker:InvokeEndpointWithResponseStream';

/** The task role's statements (without the collector's, which observability.test.ts covers). */
const taskStatements = (s: Synthesized) => roleStatements(s.json, taskRoleId(s.json));
const resourcesOf = (statements: Statement[], action: string) =>
  statements.filter((st) => st.actions.includes(action)).flatMap((st) => st.resources).sort();

/** The custom resources that seed gateway.yaml, as [logicalId, properties]. */
const configSeeds = (json: CfnTemplate) => resources(json, 'Custom::AWS').filter(([id]) => id.startsWith('SeedConfigObject'));

function serviceDependsOn(json: CfnTemplate): string[] {
  const [, service] = Object.entries(json.Resources).find(([, r]) => r.Type === 'AWS::ECS::Service')!;
  return service.DependsOn ?? [];
}

/** The refusal message of `checkConfigSeed`, or '' when it passes. */
const seedRefusal = (text: string) => thrownMessage(() => checkConfigSeed('g.yaml', text));

/** readSettings' message for `context` (with a certificate and one stage), or '' when it passes. */
const settingsRefusal = (context: Record<string, unknown>) => thrownMessage(
  () => readSettings(new App({ context: { certificateArn: CERT, stageEndpoints: { prod: 'x' }, ...context } }).node));

let plain: Synthesized;
before(() => {
  plain = synth({ observability: 'false' });
});

describe('gateway.yaml from the stack\'s S3 object (the default)', () => {
  test('the gateway reads s3://<keys bucket>/gateway.yaml, which the stack outputs', () => {
    assert.equal(gatewayEnv(plain.json).SAGEGATE_CONFIG, `s3://\${KeysBucketC65599E5}/gateway.yaml`);
    assert.equal(render(plain.json.Outputs?.ConfigObject?.Value), `s3://\${KeysBucketC65599E5}/gateway.yaml`);
    // Where a reload's `configuration reloaded` line is read (aws logs tail).
    assert.match(render(plain.json.Outputs?.GatewayLogGroup?.Value), /^\$\{GatewayLogs\w+\}$/);
  });

  test('the task role reads exactly that object and the keys object, with no KMS permission', () => {
    const statements = taskStatements(plain);
    assert.deepEqual(resourcesOf(statements, 's3:GetObject'), [`${BUCKET_ARN}/gateway.yaml`, `${BUCKET_ARN}/keys.yaml`]);
    assert.ok(!statements.some((st) => st.actions.some((a) => a.startsWith('kms:'))), 'the bucket is SSE-S3');
  });

  test('the repository\'s gateway.yaml is written once at creation, before the service starts', () => {
    const seeds = configSeeds(plain.json);
    assert.equal(seeds.length, 1);
    const [seedId, seed] = seeds[0];
    const create = JSON.parse(render(seed.Create));
    assert.equal(create.action, 'putObject');
    assert.equal(create.parameters.Key, 'gateway.yaml');
    assert.equal(create.parameters.Body, fs.readFileSync(SHIPPED_CONFIG_FILE, 'utf8'));
    // Create only: a later deploy never rolls an uploaded canary back to the repository's file.
    assert.equal(seed.Update, undefined);
    assert.equal(seed.Delete, undefined);
    assert.ok(serviceDependsOn(plain.json).includes(seedId), 'tasks must not start before the object exists');
    // The seeding function may write that object only.
    const policy = resources(plain.json, 'AWS::IAM::Policy').find(([id]) => id.startsWith('SeedConfigObjectCustomResourcePolicy'));
    assert.deepEqual(policy?.[1].PolicyDocument.Statement.map((st: any) => [st.Action, render(st.Resource)]),
      [['s3:PutObject', `${BUCKET_ARN}/gateway.yaml`]]);
  });

  test('initialConfigFile seeds another file; one that would leak or cannot be read is refused at synth', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagegate-config-'));
    try {
      const own = path.join(dir, 'gateway.yaml');
      const text = fs.readFileSync(SHIPPED_CONFIG_FILE, 'utf8').replace('rate_limit: 1000', 'rate_limit: 500');
      fs.writeFileSync(own, text);
      const [[, seed]] = configSeeds(synth({ initialConfigFile: own }).json);
      assert.equal(JSON.parse(render(seed.Create)).parameters.Body, text);

      const leaky = path.join(dir, 'leaky.yaml');
      fs.writeFileSync(leaky, text.replace('password: "${env:SAGEGATE_REDIS_PASSWORD:-}"', 'password: hunter2-in-clear'));
      assert.throws(() => synth({ initialConfigFile: leaky }), /leaky\.yaml:\d+:5: a password in clear text/);
      assert.throws(() => synth({ initialConfigFile: path.join(dir, 'missing.yaml') }), /ENOENT/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('gatewayConfig=image: the file baked into the image', () => {
  let image: Synthesized;
  before(() => {
    image = synth({ observability: 'false', gatewayConfig: 'image' });
  });

  test('no SAGEGATE_CONFIG (the image\'s /etc/sagegate/gateway.yaml), no config object, no output', () => {
    assert.equal(gatewayEnv(image.json).SAGEGATE_CONFIG, undefined);
    assert.deepEqual(configSeeds(image.json), []);
    assert.equal(image.json.Outputs?.ConfigObject, undefined);
    assert.deepEqual(resourcesOf(taskStatements(image), 's3:GetObject'), [`${BUCKET_ARN}/keys.yaml`]);
  });

  test('the options of an S3 config are refused with it, each by name', () => {
    const message = settingsRefusal({
      gatewayConfig: 'image', configObject: OPS_OBJECT, configKmsKeyArn: KMS_KEY, initialConfigFile: 'g.yaml',
    });
    for (const key of ['configObject', 'configKmsKeyArn', 'initialConfigFile']) {
      assert.ok(message.includes(`${key}: only with gatewayConfig=s3`), `${key} in:\n${message}`);
    }
  });
});

describe('configObject: the operator\'s own object', () => {
  test('read from there, exactly that object, and the stack writes nothing to it', () => {
    const s = synth({ observability: 'false', configObject: OPS_OBJECT });
    assert.equal(gatewayEnv(s.json).SAGEGATE_CONFIG, OPS_OBJECT);
    assert.equal(render(s.json.Outputs?.ConfigObject?.Value), OPS_OBJECT);
    assert.deepEqual(resourcesOf(taskStatements(s), 's3:GetObject'), [`${BUCKET_ARN}/keys.yaml`, OPS_OBJECT_ARN]);
    assert.deepEqual(configSeeds(s.json), []);
    assert.ok(!taskStatements(s).some((st) => st.actions.some((a) => a.startsWith('kms:'))));
  });

  test('with configKmsKeyArn: kms:Decrypt on that key, only through S3 and only for that object', () => {
    const s = synth({ observability: 'false', configObject: OPS_OBJECT, configKmsKeyArn: KMS_KEY });
    // Raw statements: roleStatements() drops conditions.
    const docs = resources(s.json, 'AWS::IAM::Policy')
      .filter(([, p]) => (p.Roles ?? []).some((r: any) => r.Ref === taskRoleId(s.json)))
      .flatMap(([, p]) => p.PolicyDocument.Statement);
    const kms = docs.filter((st: any) => [st.Action].flat().some((a: string) => a.startsWith('kms:')));
    assert.equal(kms.length, 1);
    assert.equal(kms[0].Action, 'kms:Decrypt');
    assert.equal(kms[0].Resource, KMS_KEY);
    const cond = kms[0].Condition.StringEquals;
    assert.equal(render(cond['kms:ViaService']), 's3.eu-west-1.${AWS::URLSuffix}');
    assert.deepEqual(cond['kms:EncryptionContext:aws:s3:arn'].map(render),
      [OPS_OBJECT_ARN, 'arn:${AWS::Partition}:s3:::ops-config-eu']);
  });

  test('an object that is not exactly one, a key alias, and options that do not fit together are refused', () => {
    for (const bad of ['s3://ops-config-eu/sagegate/*', 's3://ops-config-eu/a?b', 's3://ops-config-eu/${aws:username}',
      's3://Ops_Config/gateway.yaml', 's3://ops-config-eu/', 's3://ops-config-eu/dir/', 'https://ops-config-eu/g.yaml']) {
      assert.match(settingsRefusal({ configObject: bad }), /configObject: expected s3:\/\/bucket\/key naming one object/, bad);
    }
    assert.match(settingsRefusal({ configObject: OPS_OBJECT, configKmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:alias/cfg' }),
      /configKmsKeyArn: not a KMS key ARN/);
    assert.match(settingsRefusal({ configKmsKeyArn: KMS_KEY }), /configKmsKeyArn: only with configObject/);
    assert.match(settingsRefusal({ configObject: OPS_OBJECT, initialConfigFile: 'g.yaml' }),
      /initialConfigFile: not with configObject/);
    assert.equal(settingsRefusal({ configObject: OPS_OBJECT, configKmsKeyArn: KMS_KEY }), '');
  });
});

describe('rolloutEndpoints: the canary and shadow endpoints the task role may invoke', () => {
  const rollout = (s: Synthesized, action: string) => resourcesOf(taskStatements(s), action);

  test('exact ARNs for both calls, lower-cased, deduplicated with the stages\' endpoints', () => {
    const s = synth({
      observability: 'false',
      rolloutEndpoints: 'movie-recommender-v2, Movie-Recommender-Next,movie-recommender-prod,MOVIE-RECOMMENDER-V2',
    });
    const expected = ['movie-recommender-next', 'movie-recommender-prod', 'movie-recommender-temp', 'movie-recommender-v2']
      .map(endpointArn);
    assert.deepEqual(rollout(s, 'sagemaker:InvokeEndpoint'), expected);
    assert.deepEqual(rollout(s, STREAM), expected);
    // No other SageMaker action, and no wildcard.
    const sagemaker = taskStatements(s).flatMap((st) => st.actions).filter((a) => a.startsWith('sagemaker:'));
    assert.deepEqual([...new Set(sagemaker)].sort(), ['sagemaker:InvokeEndpoint', STREAM]);
    assert.ok(taskStatements(s).every((st) => st.resources.every((r) => !r.includes('*'))));
  });

  test('a JSON array (cdk.json) gives the same grant as a comma list (-c)', () => {
    const read = (rolloutEndpoints: unknown) =>
      readSettings(new App({ context: { certificateArn: CERT, stageEndpoints: { p: 'x' }, rolloutEndpoints } }).node);
    const fromList = read('a-v2,b');
    const fromArray = read(['a-v2', 'b']);
    assert.deepEqual(fromArray.rolloutEndpoints, ['a-v2', 'b']);
    assert.deepEqual(fromList.rolloutEndpoints, fromArray.rolloutEndpoints);
  });

  test('with deployModel the stack\'s endpoints are referenced, the rollout ones named, none created', () => {
    const s = synth({ observability: 'false', deployModel: 'true', rolloutEndpoints: 'movie-recommender-v2' });
    const endpoints = resources(s.json, 'AWS::SageMaker::Endpoint');
    assert.equal(endpoints.length, 2, 'a canary endpoint is deployed apart, as a new model version');
    const expected = [...endpoints.map(([id]) => `\${${id}}`), endpointArn('movie-recommender-v2')].sort();
    assert.deepEqual(rollout(s, 'sagemaker:InvokeEndpoint'), expected);
    assert.deepEqual(rollout(s, STREAM), expected);
  });

  test('every invalid name is listed', () => {
    const message = settingsRefusal({ rolloutEndpoints: 'ok-v2,-bad,under_score,' + 'x'.repeat(64) });
    assert.match(message, /rolloutEndpoints: invalid SageMaker endpoint name: "-bad"/);
    assert.match(message, /rolloutEndpoints: invalid SageMaker endpoint name: "under_score"/);
    assert.match(message, /rolloutEndpoints: invalid SageMaker endpoint name: "x{64}"/);
    assert.ok(!message.includes('"ok-v2"'), message);
  });
});

describe('checkConfigSeed', () => {
  test('the shipped gateway.yaml passes', () => {
    assert.equal(seedRefusal(fs.readFileSync(SHIPPED_CONFIG_FILE, 'utf8')), '');
  });

  test('a password from the environment passes; one in clear text is refused where it is, in any style', () => {
    assert.equal(seedRefusal('limits:\n  redis: { password: "${env:P}", username: "" }\n'), '');
    assert.equal(seedRefusal('limits:\n  redis:\n    password: ""\n'), '');
    assert.match(seedRefusal('limits:\n  redis:\n    password: s3cret\n'), /g\.yaml:3:5: a password in clear text/);
    assert.match(seedRefusal('limits: { redis: { "password": s3cret } }\n'), /g\.yaml:1:20: a password in clear text/);
  });

  test('not one mapping, not YAML, or too large for the seeding event: refused', () => {
    assert.match(seedRefusal('- a\n- b\n'), /not a YAML mapping/);
    assert.match(seedRefusal('# nothing\n'), /not a YAML mapping/);
    assert.match(seedRefusal('stages: {}\n---\nroutes: []\n'), /g\.yaml:2:1: a second YAML document/);
    assert.match(seedRefusal('stages: {a: [\n'), /not valid YAML/);
    const big = `stages: {}\n# ${'x'.repeat(MAX_SEED_BYTES)}\n`;
    assert.match(seedRefusal(big), /more than the 131072 a seed may have .*configObject=s3:/);
  });
});
