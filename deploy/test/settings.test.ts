/**
 * Context parsing: `-c` values arrive as strings, cdk.json values keep their JSON type; both must
 * give the same settings, and a bad context must fail synth with every problem listed at once.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { App } from 'aws-cdk-lib';
import { endpointEnvVar, readSettings } from '../lib/settings';
import { CERT } from './helpers';

/** Settings from `context`, with a certificate unless the context says otherwise (`certificateArn: ''`). */
const read = (context: Record<string, unknown>) =>
  readSettings(new App({ context: { certificateArn: CERT, ...context } }).node);

describe('readSettings', () => {
  test('stage endpoints from a JSON string (-c) and from an object (cdk.json) agree', () => {
    const fromString = read({ stageEndpoints: '{"temp":"a-temp","prod":"a-prod"}' });
    const fromObject = read({ stageEndpoints: { temp: 'a-temp', prod: 'a-prod' } });
    assert.deepEqual(fromString, fromObject);
    assert.deepEqual(fromObject.stages, [
      { stage: 'temp', endpointName: 'a-temp', envVar: 'SAGEGATE_ENDPOINT_TEMP' },
      { stage: 'prod', endpointName: 'a-prod', envVar: 'SAGEGATE_ENDPOINT_PROD' },
    ]);
  });

  test('defaults', () => {
    const s = read({ stageEndpoints: { temp: 'x' } });
    assert.equal(s.deployModel, false);
    assert.equal(s.minTasks, 2);
    assert.equal(s.maxTasks, 10);
    assert.equal(s.drainGraceSecs, 30);
    assert.equal(s.modelInstanceType, 'ml.m5.large');
    assert.equal(s.routeTimeoutMs, undefined);
    assert.equal(s.internal, false);
    assert.equal(s.allowPlainHttp, false);
    assert.equal(s.ingressCidrs, undefined);
    assert.equal(s.observability, true);
    assert.equal(s.traceSampleRatio, 0.01);
    assert.match(s.collectorImage, /aws-otel-collector:v/);
    assert.equal(s.sharedLimits, true, 'maxTasks 10 > 1');
    assert.equal(s.cacheNodeType, 'cache.t4g.micro');
    assert.equal(s.limitsOnStoreFailure, 'local');
    assert.equal(s.waf, false);
    assert.equal(s.wafRateLimit, 6000);
    assert.equal(s.accessLogDays, 90);
    assert.equal(s.gatewayConfig, 's3', 'gateway.yaml from S3: a rollout step is an upload, not a deployment');
    assert.equal(s.configObject, undefined);
    assert.equal(s.configKmsKeyArn, undefined);
    assert.equal(s.initialConfigFile, undefined);
    assert.deepEqual(s.rolloutEndpoints, []);
  });

  test('no certificate: refused for an internet-facing ALB, accepted when internal or plain HTTP is asked for', () => {
    assert.throws(() => read({ stageEndpoints: { t: 'x' }, certificateArn: '' }), /certificateArn: an internet-facing load balancer needs a certificate/);
    assert.equal(read({ stageEndpoints: { t: 'x' }, certificateArn: '', internal: 'true' }).certificateArn, undefined);
    assert.equal(read({ stageEndpoints: { t: 'x' }, certificateArn: '', allowPlainHttp: true }).allowPlainHttp, true);
  });

  test('shared limits default to on exactly when there can be more than one task', () => {
    assert.equal(read({ stageEndpoints: { t: 'x' }, minTasks: 1, maxTasks: 1 }).sharedLimits, false);
    assert.equal(read({ stageEndpoints: { t: 'x' }, minTasks: 1, maxTasks: 2 }).sharedLimits, true);
    assert.equal(read({ stageEndpoints: { t: 'x' }, maxTasks: 4, sharedLimits: 'false' }).sharedLimits, false);
    assert.equal(read({ stageEndpoints: { t: 'x' }, minTasks: 1, maxTasks: 1, sharedLimits: true }).sharedLimits, true);
  });

  test('ingress CIDRs from a comma list (-c) and a JSON array (cdk.json) agree', () => {
    const fromString = read({ stageEndpoints: { t: 'x' }, ingressCidrs: '203.0.113.0/24,10.1.0.0/16' }).ingressCidrs;
    const fromArray = read({ stageEndpoints: { t: 'x' }, ingressCidrs: ['203.0.113.0/24', '10.1.0.0/16'] }).ingressCidrs;
    assert.deepEqual(fromString, ['203.0.113.0/24', '10.1.0.0/16']);
    assert.deepEqual(fromArray, fromString);
  });

  test('booleans and numbers accept both string and JSON forms', () => {
    assert.equal(read({ stageEndpoints: { t: 'x' }, deployModel: 'true' }).deployModel, true);
    assert.equal(read({ stageEndpoints: { t: 'x' }, deployModel: true }).deployModel, true);
    assert.equal(read({ stageEndpoints: { t: 'x' }, minTasks: '4', maxTasks: 8 }).minTasks, 4);
  });

  test('environment variable names: upper case, dashes become underscores', () => {
    assert.equal(endpointEnvVar('eu-prod'), 'SAGEGATE_ENDPOINT_EU_PROD');
    assert.throws(
      () => read({ stageEndpoints: { 'eu-prod': 'a', eu_prod: 'b' } }),
      /same environment variable SAGEGATE_ENDPOINT_EU_PROD/,
    );
  });

  test('every problem is reported at once', () => {
    let message = '';
    try {
      read({
        stageEndpoints: { healthz: 'a', temp: 'bad_name!', prod: 'ok' },
        deployModel: 'yes',
        minTasks: '0',
        routeTimeoutMs: '90000',
        modelDataUrl: 'https://example.com/model.tar.gz',
        ingressCidrs: '10.0.0.0/8,300.0.0.0/8',
        cacheNodeType: 'm5.large',
        limitsOnStoreFailure: 'open',
        waf: 'on',
        wafRateLimit: '5',
        accessLogDays: '0',
        gatewayConfig: 'file',
        rolloutEndpoints: 'recsys-v2,recsys_next',
        configKmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:alias/config',
      });
    } catch (e) {
      message = (e as Error).message;
    }
    for (const expected of [
      'stageEndpoints.healthz: invalid stage name',
      'stageEndpoints.temp: invalid SageMaker endpoint name',
      'deployModel: expected true or false',
      'minTasks: expected an integer in [1, 1000]',
      'routeTimeoutMs: expected an integer in [1, 60000]',
      'modelDataUrl: expected s3://bucket/key',
      'ingressCidrs: expected IPv4 CIDR blocks',
      'cacheNodeType: not an ElastiCache node type',
      'limitsOnStoreFailure: expected local or deny',
      'waf: expected true or false',
      'wafRateLimit: expected an integer in [10, 2000000000]',
      'accessLogDays: expected an integer in [1, 3650]',
      'gatewayConfig: expected s3 or image, got "file"',
      'rolloutEndpoints: invalid SageMaker endpoint name: "recsys_next"',
      'configKmsKeyArn: not a KMS key ARN',
      'configKmsKeyArn: only with configObject',
    ]) {
      assert.ok(message.includes(expected), `missing "${expected}" in:\n${message}`);
    }
  });

  test('a missing or non-object stage map is refused', () => {
    assert.throws(() => read({}), /stageEndpoints: expected an object/);
    assert.throws(() => read({ stageEndpoints: '["temp"]' }), /stageEndpoints: expected an object/);
    assert.throws(() => read({ stageEndpoints: '{temp' }), /stageEndpoints: not JSON/);
    assert.throws(() => read({ stageEndpoints: {} }), /at least one stage/);
  });
});
