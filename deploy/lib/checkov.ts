/**
 * checkov suppressions, written into the template (`Metadata.checkov.skip`, one reason each), so the
 * scan in .ci/deploy-check.sh fails on any finding that is not listed here with its reason.
 *
 * Only findings that are not ours to fix are suppressed: the CDK framework's own helper Lambda
 * functions (the custom resource that seeds the keys and config objects, and the one that empties
 * the VPC's default security group) and the access-log bucket's logging of itself. Each is found by its
 * construct path; a function of our own would be at another path and keep every finding.
 */
import { CfnResource, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/** One suppressed check and why. */
export interface Skip {
  readonly id: string;
  readonly comment: string;
}

/** Adds `skips` to the resource's checkov metadata. */
export function skipChecks(resource: CfnResource, skips: Skip[]): void {
  const existing = (resource.getMetadata('checkov')?.skip ?? []) as Skip[];
  resource.addMetadata('checkov', { skip: [...existing, ...skips] });
}

/** Construct paths, under the stack, of the CDK's helper functions this stack makes it create. */
const FRAMEWORK_FUNCTIONS: Record<string, string> = {
  // AwsCustomResource's singleton function (SeedKeysObject, SeedConfigObject): one S3 PutObject
  // each at stack creation.
  'AWS679f53fac002430cb0da5b7982bd2287/Resource': 'AwsCustomResource (seeds the keys and config objects once)',
  // The feature flag @aws-cdk/aws-ec2:restrictDefaultSecurityGroup: strips the VPC's default group.
  'Custom::VpcRestrictDefaultSGCustomResourceProvider/Handler': 'the VPC default security group restriction',
};

/**
 * Suppresses the findings on the CDK's helper functions: they run for seconds during a deploy, are
 * invoked by CloudFormation only, and their code and settings are the CDK's, not this app's.
 */
export function skipFrameworkFindings(stack: Stack): void {
  for (const [relative, what] of Object.entries(FRAMEWORK_FUNCTIONS)) {
    const fn = findPath(stack, relative.split('/'));
    if (!(fn instanceof CfnResource) || fn.cfnResourceType !== 'AWS::Lambda::Function') continue;
    skipChecks(fn, [
      { id: 'CKV_AWS_115', comment: `CDK framework function (${what}), invoked only by CloudFormation during a deploy: no concurrency to reserve` },
      { id: 'CKV_AWS_116', comment: `CDK framework function (${what}): CloudFormation calls it synchronously and reports its failure; a DLQ would never receive anything` },
      { id: 'CKV_AWS_117', comment: `CDK framework function (${what}): calls AWS APIs only; in the VPC it would add ENIs that delay stack deletion and need the NAT for nothing` },
    ]);
  }
}

function findPath(root: IConstruct, ids: string[]): IConstruct | undefined {
  let node: IConstruct | undefined = root;
  for (const id of ids) node = node?.node.tryFindChild(id);
  return node;
}
