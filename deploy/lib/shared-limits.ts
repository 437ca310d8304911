/**
 * The shared limit store: usage-plan throttles and quotas counted once for the whole service, in an
 * ElastiCache Valkey replication group, instead of once per task (docs/limits.md).
 *
 * Input: the VPC, the gateway's Fargate service and container, the stack's KMS key and the settings.
 * Output: a two-node replication group (primary and replica in two AZs, automatic failover) in the
 * private subnets, its auth token in Secrets Manager, its security group, and the gateway's
 * `limits` settings pointed at it through the environment the shipped config/gateway.yaml reads.
 *
 * Invariants (tested in deploy/test/shared-limits.test.ts):
 * - TLS in transit is required (`rediss://`), so the auth token never crosses the network in clear;
 *   data at rest is encrypted with the stack's key;
 * - the token reaches the task only as an ECS secret (`SAGEGATE_REDIS_PASSWORD`), never as a plain
 *   variable, in the image or in a file;
 * - port 6379 is open to the gateway service's security group and to nothing else; the cache's
 *   group has no egress at all;
 * - the failure policy is set explicitly, never left to the config file's default.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { Settings } from './settings';

/** The port the replication group listens on (ElastiCache's default). */
export const LIMIT_STORE_PORT = 6379;
/**
 * Valkey release line of the limit store; the local stack's `valkey` service (docker-compose.yml)
 * runs the same one, so the admission script is tried locally against what runs in AWS.
 */
export const VALKEY_VERSION = '8.1';

/**
 * Creates the limit store and wires the gateway to it. Call after the service exists: the cache's
 * security group admits the service's own group.
 */
export function addSharedLimits(
  scope: Construct,
  vpc: ec2.IVpc,
  service: ecs.FargateService,
  gateway: ecs.ContainerDefinition,
  key: kms.IKey,
  settings: Settings,
): elasticache.CfnReplicationGroup {
  // ElastiCache auth tokens: 16 to 128 printable characters without @, " or /; letters and digits
  // keep it safe in every shell and URL too.
  const authToken = new secretsmanager.Secret(scope, 'LimitStoreAuthToken', {
    description: 'sagegate: auth token of the shared limit store (ElastiCache Valkey)',
    encryptionKey: key,
    generateSecretString: { passwordLength: 64, excludePunctuation: true },
  });

  const securityGroup = new ec2.SecurityGroup(scope, 'LimitStoreSecurityGroup', {
    vpc,
    description: 'sagegate shared limit store: Valkey from the gateway tasks only',
    allowAllOutbound: false,
  });
  securityGroup.connections.allowFrom(service, ec2.Port.tcp(LIMIT_STORE_PORT), 'gateway tasks to the limit store');

  const subnets = new elasticache.CfnSubnetGroup(scope, 'LimitStoreSubnets', {
    description: 'sagegate shared limit store: the private subnets of the gateway tasks',
    subnetIds: vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds,
  });

  const store = new elasticache.CfnReplicationGroup(scope, 'LimitStore', {
    replicationGroupDescription: 'sagegate shared usage-plan throttles and quotas',
    engine: 'valkey',
    engineVersion: VALKEY_VERSION,
    cacheNodeType: settings.cacheNodeType,
    // Primary and replica in two AZs: counts survive the loss of one node (quotas would otherwise
    // restart from zero for the period), and failover is automatic.
    numCacheClusters: 2,
    automaticFailoverEnabled: true,
    multiAzEnabled: true,
    port: LIMIT_STORE_PORT,
    transitEncryptionEnabled: true,
    transitEncryptionMode: 'required',
    atRestEncryptionEnabled: true,
    kmsKeyId: key.keyArn,
    // Resolved by CloudFormation from Secrets Manager at deploy time: the template holds a reference.
    authToken: authToken.secretValue.unsafeUnwrap(),
    cacheSubnetGroupName: subnets.ref,
    securityGroupIds: [securityGroup.securityGroupId],
    autoMinorVersionUpgrade: true,
    // Counts change with every request and expire by themselves within a quota period: a snapshot is
    // stale when it is taken, and the replica is the protection against losing a node.
    snapshotRetentionLimit: 0,
  });

  gateway.addEnvironment('SAGEGATE_LIMITS_STORE', 'redis');
  // The primary endpoint follows a failover, so the gateway never needs to learn the new primary.
  // Referencing it also orders the task definition, hence the first tasks, after the store.
  gateway.addEnvironment('SAGEGATE_REDIS_URL', `rediss://${store.attrPrimaryEndPointAddress}:${LIMIT_STORE_PORT}`);
  // `local`, unless -c limitsOnStoreFailure=deny: a cache outage must not become an API outage.
  // Each task then decides with its own in-process limits (the same plans, counted per task), an
  // error bounded by docs/limits.md, and hands the quota it admitted back to the shared count when
  // the store returns. Envoy's global rate limit (failure_mode_deny: false) and Kong's
  // rate-limiting (fault_tolerant: true) fail open by default for the same reason. `deny` answers
  // 503 while the store is down: for plans that are billed or contractual.
  gateway.addEnvironment('SAGEGATE_LIMITS_ON_STORE_FAILURE', settings.limitsOnStoreFailure);
  gateway.addSecret('SAGEGATE_REDIS_PASSWORD', ecs.Secret.fromSecretsManager(authToken));
  return store;
}
