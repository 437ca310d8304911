/**
 * What an infrastructure scanner asks of the stack, asserted directly: encrypted log groups, access
 * logs with an expiry, and checkov suppressions only where the finding is not ours (each with its
 * reason). .ci/deploy-check.sh then runs checkov itself on the synthesized templates.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import { ELB_LOG_DELIVERY_SERVICE } from '../lib/access-logs';
import { CfnTemplate, Synthesized, render, resources, single, synth } from './helpers';

let plain: Synthesized;
let full: Synthesized;
before(() => {
  plain = synth();
  full = synth({ deployModel: 'true', waf: 'true', modelDataUrl: 's3://models-bucket/r/model.tar.gz' });
});

function idStarting(json: CfnTemplate, type: string, prefix: string): string {
  const [id] = resources(json, type).find(([i]) => i.startsWith(prefix)) ?? [];
  assert.ok(id, `no ${type} ${prefix}*`);
  return id;
}

describe('KMS: every log group encrypted with the stack key', () => {
  test('each log group names the key, in the default and in the full stack', () => {
    for (const s of [plain, full]) {
      const groups = resources(s.json, 'AWS::Logs::LogGroup');
      assert.ok(groups.length >= 3, groups.map(([id]) => id).join(','));
      for (const [id, g] of groups) assert.match(render(g.KmsKeyId), /^\$\{DataKey\w+\.Arn\}$/, id);
    }
  });

  test('the key rotates, and CloudWatch Logs may use it for this account and region only', () => {
    const [, key] = single(plain.json, 'AWS::KMS::Key');
    assert.equal(key.EnableKeyRotation, true);
    const logs = key.KeyPolicy.Statement.find((s: any) => s.Sid === 'CloudWatchLogsOfThisAccount');
    assert.equal(render(logs.Principal.Service), 'logs.${AWS::Region}.${AWS::URLSuffix}');
    assert.equal(
      render(logs.Condition.ArnLike['kms:EncryptionContext:aws:logs:arn']),
      'arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*',
    );
  });
});

describe('access logs', () => {
  test('one private, TLS-only, SSE-S3 bucket whose logs expire after accessLogDays', () => {
    const id = idStarting(plain.json, 'AWS::S3::Bucket', 'AccessLogsBucket');
    const bucket = plain.json.Resources[id].Properties;
    assert.equal(bucket.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm, 'AES256');
    assert.equal(bucket.PublicAccessBlockConfiguration.RestrictPublicBuckets, true);
    const [rule] = bucket.LifecycleConfiguration.Rules;
    assert.equal(rule.Status, 'Enabled');
    assert.equal(rule.ExpirationInDays, 90);
    assert.equal(rule.NoncurrentVersionExpiration.NoncurrentDays, 1);
    const other = synth({ accessLogDays: '400' });
    const otherBucket = other.json.Resources[idStarting(other.json, 'AWS::S3::Bucket', 'AccessLogsBucket')].Properties;
    assert.equal(otherBucket.LifecycleConfiguration.Rules[0].ExpirationInDays, 400);
  });

  test('the ALB logs every request there, under alb/, once the bucket lets it', () => {
    const bucketId = idStarting(plain.json, 'AWS::S3::Bucket', 'AccessLogsBucket');
    const [albId, alb] = single(plain.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const attrs = Object.fromEntries(alb.LoadBalancerAttributes.map((a: any) => [a.Key, render(a.Value)]));
    assert.equal(attrs['access_logs.s3.enabled'], 'true');
    assert.equal(attrs['access_logs.s3.bucket'], `\${${bucketId}}`);
    assert.equal(attrs['access_logs.s3.prefix'], 'alb');
    const policyId = idStarting(plain.json, 'AWS::S3::BucketPolicy', 'AccessLogsBucketPolicy');
    assert.ok(plain.json.Resources[albId].DependsOn?.includes(policyId), 'ELB tests its write access when logging is turned on');
  });

  test('the ALB may write its prefix only; the ELB account in older regions, the log delivery service elsewhere', () => {
    const policyId = idStarting(plain.json, 'AWS::S3::BucketPolicy', 'AccessLogsBucketPolicy');
    const statements = plain.json.Resources[policyId].Properties.PolicyDocument.Statement;
    const alb = statements.find((s: any) => s.Sid === 'AlbAccessLogDelivery');
    assert.equal(alb.Effect, 'Allow');
    assert.equal(alb.Action, 's3:PutObject');
    assert.match(render(alb.Resource), /^\$\{AccessLogsBucket\w+\.Arn\}\/alb\/AWSLogs\/\$\{AWS::AccountId\}\/\*$/);
    const [cond, byAccount, noValue] = alb.Principal.AWS['Fn::If'];
    assert.equal(render(byAccount), 'arn:${AWS::Partition}:iam::{"Fn::FindInMap":["ElbLogDeliveryAccounts",{"Ref":"AWS::Region"},"account"]}:root');
    assert.deepEqual(noValue, { Ref: 'AWS::NoValue' });
    assert.deepEqual(alb.Principal.Service, { 'Fn::If': [cond, { Ref: 'AWS::NoValue' }, ELB_LOG_DELIVERY_SERVICE] });
    // The mapping is the CDK's own table of ELB accounts, and the condition is true in exactly those regions.
    const mapping = (plain.json as any).Mappings.ElbLogDeliveryAccounts;
    assert.equal(mapping['us-east-1'].account, RegionInfo.get('us-east-1').elbv2Account);
    assert.equal(mapping['ap-southeast-5'], undefined, 'a region opened after August 2022');
    const regions = JSON.stringify((plain.json as any).Conditions[cond]).match(/"[a-z]{2}(-[a-z]+)+-\d"/g)?.map((r) => JSON.parse(r));
    assert.deepEqual(regions?.sort(), Object.keys(mapping).sort());
  });

  test('the keys bucket logs who read or replaced the keys file', () => {
    const bucketId = idStarting(plain.json, 'AWS::S3::Bucket', 'AccessLogsBucket');
    const [, keys] = resources(plain.json, 'AWS::S3::Bucket').find(([id]) => id.startsWith('KeysBucket'))!;
    assert.deepEqual(keys.LoggingConfiguration, { DestinationBucketName: { Ref: bucketId }, LogFilePrefix: 'keys-bucket/' });
  });
});

describe('checkov suppressions: only what is not ours, each with a reason', () => {
  /** logical id → the checks it skips. */
  function skipped(json: CfnTemplate): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [id, r] of Object.entries(json.Resources)) {
      const skips = r.Metadata?.checkov?.skip;
      if (skips === undefined) continue;
      for (const s of skips) assert.ok(typeof s.comment === 'string' && s.comment.length > 20, `${id} ${s.id}: no reason`);
      out[id] = skips.map((s: any) => s.id).sort();
    }
    return out;
  }

  test('the CDK helper functions and the log bucket logging itself, nothing else', () => {
    for (const s of [plain, full]) {
      const skips = skipped(s.json);
      const lambdas = resources(s.json, 'AWS::Lambda::Function').map(([id]) => id);
      // The AwsCustomResource singleton and the VPC default-group restriction, by their fixed ids.
      assert.deepEqual(lambdas.map((id) => id.replace(/[0-9A-F]{8}$/, '')).sort(), [
        'AWS679f53fac002430cb0da5b7982bd2287', 'CustomVpcRestrictDefaultSGCustomResourceProviderHandler',
      ]);
      for (const id of lambdas) assert.deepEqual(skips[id], ['CKV_AWS_115', 'CKV_AWS_116', 'CKV_AWS_117'], id);
      const bucket = idStarting(s.json, 'AWS::S3::Bucket', 'AccessLogsBucket');
      assert.deepEqual(skips[bucket], ['CKV_AWS_18']);
      assert.deepEqual(Object.keys(skips).sort(), [...lambdas, bucket].sort());
    }
  });
});

describe('the recommender model', () => {
  test('runs with network isolation: a request cannot make it reach the network', () => {
    const [, model] = single(full.json, 'AWS::SageMaker::Model');
    assert.equal(model.EnableNetworkIsolation, true);
  });
});
