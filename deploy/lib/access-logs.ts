/**
 * Access logs: one bucket for the ALB's request logs and the keys bucket's S3 server access logs,
 * expired after `accessLogDays`.
 *
 * Input: the stack and the settings. Output: the bucket, and `logAlbAccess` to point an ALB at it.
 * Invariants (tested in deploy/test/hardening.test.ts):
 * - the bucket is private, TLS only, SSE-S3 (the only encryption ALB log delivery supports), and
 *   every object expires after `accessLogDays` (old versions a day after they are replaced);
 * - the ALB may write under its own prefix only, for this account only.
 *
 * The stack stays environment-agnostic (it synthesizes without a region or credentials), so the
 * principal that delivers ALB logs is chosen at deploy time: an Elastic Load Balancing account in
 * the regions that existed before August 2022, the `logdelivery.elasticloadbalancing.amazonaws.com`
 * service in the others (AWS's "Enable access logs for your Application Load Balancer"). The CDK's
 * own `logAccessLogs` picks the same principal but needs the region at synth.
 */
import { Aws, CfnCondition, CfnMapping, Duration, Fn, ICfnConditionExpression, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import { Construct } from 'constructs';
import { skipChecks } from './checkov';
import { Settings } from './settings';

/** The service that delivers ALB access logs in regions opened since August 2022. */
export const ELB_LOG_DELIVERY_SERVICE = 'logdelivery.elasticloadbalancing.amazonaws.com';

/** The access-log bucket. */
export function accessLogsBucket(scope: Construct, settings: Settings): s3.Bucket {
  const bucket = new s3.Bucket(scope, 'AccessLogsBucket', {
    encryption: s3.BucketEncryption.S3_MANAGED,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    enforceSSL: true,
    versioned: true,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    removalPolicy: RemovalPolicy.RETAIN,
    lifecycleRules: [{
      id: 'expire-access-logs',
      expiration: Duration.days(settings.accessLogDays),
      noncurrentVersionExpiration: Duration.days(1),
      abortIncompleteMultipartUploadAfter: Duration.days(1),
    }],
  });
  skipChecks(bucket.node.defaultChild as s3.CfnBucket, [{
    id: 'CKV_AWS_18',
    comment: 'this is the access-log bucket: logging it into itself would log its own deliveries in a loop',
  }]);
  return bucket;
}

/** Turns on the ALB's access logs into `bucket` under `prefix/`, with the bucket policy they need. */
export function logAlbAccess(alb: elbv2.ApplicationLoadBalancer, bucket: s3.Bucket, prefix: string): void {
  const stack = Stack.of(alb);
  const accounts: Record<string, Record<string, string>> = {};
  for (const r of RegionInfo.regions) {
    if (r.elbv2Account !== undefined) accounts[r.name] = { account: r.elbv2Account };
  }
  const map = new CfnMapping(stack, 'ElbLogDeliveryAccounts', { mapping: accounts });
  const legacy = new CfnCondition(stack, 'ElbLogDeliveryByAccount', {
    expression: anyOf(Object.keys(accounts).map((r) => Fn.conditionEquals(Aws.REGION, r))),
  });
  // One of the two principals is removed at deploy time (AWS::NoValue), by region.
  const accountArn = `arn:${Aws.PARTITION}:iam::${map.findInMap(Aws.REGION, 'account')}:root`;
  bucket.addToResourcePolicy(new iam.PolicyStatement({
    sid: 'AlbAccessLogDelivery',
    principals: [
      new iam.ArnPrincipal(Fn.conditionIf(legacy.logicalId, accountArn, Aws.NO_VALUE).toString()),
      new iam.ServicePrincipal(Fn.conditionIf(legacy.logicalId, Aws.NO_VALUE, ELB_LOG_DELIVERY_SERVICE).toString()),
    ],
    actions: ['s3:PutObject'],
    resources: [bucket.arnForObjects(`${prefix}/AWSLogs/${Aws.ACCOUNT_ID}/*`)],
  }));
  alb.setAttribute('access_logs.s3.enabled', 'true');
  alb.setAttribute('access_logs.s3.bucket', bucket.bucketName);
  alb.setAttribute('access_logs.s3.prefix', prefix);
  // ELB checks that it may write (it puts a test object) when the attribute is set.
  if (bucket.policy !== undefined) alb.node.addDependency(bucket.policy);
}

/** `Fn::Or` takes 2 to 10 conditions: nest larger sets. */
function anyOf(conditions: ICfnConditionExpression[]): ICfnConditionExpression {
  if (conditions.length === 1) return conditions[0];
  if (conditions.length <= 10) return Fn.conditionOr(...conditions);
  const chunks: ICfnConditionExpression[] = [];
  for (let i = 0; i < conditions.length; i += 10) chunks.push(anyOf(conditions.slice(i, i + 10)));
  return anyOf(chunks);
}
