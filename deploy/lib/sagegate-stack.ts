/**
 * The sagegate stack: an ALB (internet-facing over HTTPS by default) in front of an ECS Fargate
 * (ARM64) service running the gateway image, the API keys file in an S3 object, the usage-plan limits
 * shared in ElastiCache when there can be more than one task, and optionally an AWS WAF web ACL and
 * the recommender as a SageMaker real-time endpoint.
 *
 * Input: `Settings` (deploy/lib/settings.ts, read from the CDK context) and the repository root,
 * whose `Dockerfile` and `recommender/Dockerfile` become image assets (built at `cdk deploy`, never at
 * synth).
 * Output: one CloudFormation stack.
 * Invariants (each has a test in deploy/test/stack.test.ts):
 * - the task role may call `sagemaker:InvokeEndpoint` and `InvokeEndpointWithResponseStream` on the
 *   ARNs of the stages' endpoints and the `rolloutEndpoints` (canaries, shadows), and `s3:GetObject`
 *   on the keys object and the gateway.yaml object (`-c gatewayConfig=s3`, the default; decrypting
 *   it too when it is the operator's SSE-KMS object), and nothing else; no `*` resource anywhere;
 * - the keys object and the stack's gateway.yaml object are written once, at creation, and exist
 *   before the first task starts; after that they are the operator's;
 * - ALB idle timeout (65 s) > longest route timeout (60 s) and < the gateway's keep-alive (75 s);
 * - deregistration delay = drain grace, and ECS's stopTimeout = drain grace + 10 s, so a stopping task
 *   first gets no new requests, then drains on SIGTERM, and exits by itself before SIGKILL;
 * - the container has a read-only root filesystem (the gateway writes nothing) and runs on ARM64;
 * - with `observability` (the default), an ADOT collector sidecar ships traces to X-Ray and metrics
 *   to CloudWatch (deploy/lib/observability.ts), and may write exactly that;
 * - no API key crosses the internet in clear text unless `allowPlainHttp` says so: with a
 *   certificate the ALB listens on 443 only, without one it must be internal (or explicitly plain);
 * - every log group is encrypted with the stack's KMS key; the ALB's and the keys bucket's access
 *   logs go to a logs bucket that expires them after `accessLogDays`;
 * - checkov finds nothing in the template that is not suppressed with a reason (deploy/lib/checkov.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Construct } from 'constructs';
import { Annotations, ArnFormat, CfnOutput, Duration, RemovalPolicy, Size, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as cr from 'aws-cdk-lib/custom-resources';
import { accessLogsBucket, logAlbAccess } from './access-logs';
import { skipFrameworkFindings } from './checkov';
import { addDashboard } from './dashboard';
import { CONFIG_OBJECT_KEY, checkConfigSeed, configObjectSource } from './gateway-config';
import { checkHashedOnly } from './keys-file';
import { addCollector, gatewayOtelEnvironment } from './observability';
import {
  ALB_IDLE_TIMEOUT_SECS, Settings, STOP_HEADROOM_SECS, readSettings,
} from './settings';
import { addSharedLimits } from './shared-limits';
import { addWebAcl } from './waf';

/** The repository root: the Docker build context of both images (filtered by its .dockerignore). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** Object key of the API keys file in the keys bucket. */
export const KEYS_OBJECT_KEY = 'keys.yaml';
/** Port the gateway listens on (`SAGEGATE_LISTEN` default) and the recommender serves on. */
const CONTAINER_PORT = 8080;
const GATEWAY_CONTAINER = 'gateway';
/** The repository's gateway.yaml: baked into the image, and the default seed of the S3 config object. */
export const SHIPPED_CONFIG_FILE = path.join(REPO_ROOT, 'config', CONFIG_OBJECT_KEY);
/**
 * A key set with no plans and no keys: every key-protected route answers 403 until keys are
 * uploaded. The same file is the image's default keys source (../Dockerfile).
 */
export const EMPTY_KEYS_FILE = path.join(REPO_ROOT, 'config', 'keys.empty.yaml');

export interface SagegateStackProps extends StackProps {
  /** Settings to use instead of reading them from the context (tests pass the context instead). */
  readonly settings?: Settings;
}

export class SagegateStack extends Stack {
  constructor(scope: Construct, id: string, props: SagegateStackProps = {}) {
    super(scope, id, props);
    const settings = props.settings ?? readSettings(this.node);

    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 1 });
    // Keys polling and image layers from ECR's S3 stay off the NAT gateway (gateway endpoints are free).
    vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3 });

    const dataKey = this.dataKey();
    const logsBucket = accessLogsBucket(this, settings);
    const keysBucket = new s3.Bucket(this, 'KeysBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      versioned: true,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      // Who read or replaced the keys file, and when: S3 server access logs.
      serverAccessLogsBucket: logsBucket,
      serverAccessLogsPrefix: 'keys-bucket/',
    });
    const seedLogs = new logs.LogGroup(this, 'SeedKeysObjectLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      encryptionKey: dataKey,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const seeds = [this.seedKeysObject(keysBucket, seedLogs, settings)];
    const config = settings.gatewayConfig === 's3' ? configObjectSource(this, keysBucket, settings) : undefined;
    if (config?.seed) seeds.push(this.seedConfigObject(keysBucket, seedLogs, settings));

    const endpoints = settings.deployModel
      ? this.recommenderEndpoints(settings)
      : new Map<string, { name: string; arn: string }>();
    // The endpoint's ARN: SageMaker lower-cases endpoint names in ARNs, and IAM compares ARNs as strings.
    const endpointRef = (name: string) => endpoints.get(name) ?? {
      name,
      arn: this.formatArn({ service: 'sagemaker', resource: 'endpoint', resourceName: name.toLowerCase() }),
    };

    const taskRole = new iam.Role(this, 'GatewayTaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'sagegate gateway: invoke the configured SageMaker endpoints, read the keys and config objects',
    });
    // A canary's or a shadow's endpoint is deployed apart (a new model version); a name the stages
    // already have (in any case: ARNs are lower case) adds nothing.
    const endpointNames = [...settings.stages.map((s) => s.endpointName), ...settings.rolloutEndpoints];
    const endpointArns = [...new Set(endpointNames.map((name) => endpointRef(name).arn))];
    taskRole.addToPolicy(new iam.PolicyStatement({
      sid: 'InvokeConfiguredEndpoints',
      // The streaming call is the same model on the same endpoint: routes with `mode: stream` use it.
      actions: ['sagemaker:InvokeEndpoint', 'sagemaker:InvokeEndpointWithResponseStream'],
      resources: endpointArns,
    }));
    taskRole.addToPolicy(new iam.PolicyStatement({
      sid: 'ReadKeysObject',
      actions: ['s3:GetObject'],
      resources: [keysBucket.arnForObjects(KEYS_OBJECT_KEY)],
    }));
    for (const statement of config?.statements ?? []) taskRole.addToPolicy(statement);

    const taskDefinition = new ecs.FargateTaskDefinition(this, 'GatewayTask', {
      cpu: 512,
      memoryLimitMiB: 1024,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole,
    });
    const logGroup = new logs.LogGroup(this, 'GatewayLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      encryptionKey: dataKey,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const environment: Record<string, string> = {
      AWS_REGION: this.region,
      SAGEGATE_KEYS: `s3://${keysBucket.bucketName}/${KEYS_OBJECT_KEY}`,
      // Without it, the image's own /etc/sagegate/gateway.yaml.
      ...(config === undefined ? {} : { SAGEGATE_CONFIG: config.url }),
      // The ALB appends the client's address to X-Forwarded-For: trust exactly that one hop.
      SAGEGATE_TRUSTED_HOPS: '1',
      SAGEGATE_DRAIN_GRACE_SECS: String(settings.drainGraceSecs),
    };
    for (const s of settings.stages) {
      environment[s.envVar] = endpointRef(s.endpointName).name;
    }
    if (settings.routeTimeoutMs !== undefined) {
      environment.SAGEGATE_ROUTE_TIMEOUT_MS = String(settings.routeTimeoutMs);
    }
    if (settings.observability) {
      Object.assign(environment, gatewayOtelEnvironment(settings));
    }

    const gateway = taskDefinition.addContainer(GATEWAY_CONTAINER, {
      image: this.gatewayImage(settings),
      essential: true,
      portMappings: [{ containerPort: CONTAINER_PORT, protocol: ecs.Protocol.TCP }],
      environment,
      readonlyRootFilesystem: true,
      stopTimeout: Duration.seconds(settings.drainGraceSecs + STOP_HEADROOM_SECS),
      ulimits: [{ name: ecs.UlimitName.NOFILE, softLimit: 65535, hardLimit: 65535 }],
      // The image is distroless (no shell, no curl): the binary probes its own /healthz.
      healthCheck: {
        command: ['CMD', '/usr/local/bin/sagegate', 'healthcheck'],
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(15),
      },
      logging: ecs.LogDrivers.awsLogs({
        streamPrefix: 'gateway',
        logGroup,
        // Logging back-pressure must never stall request handling.
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
    });

    if (settings.observability) {
      addCollector(this, taskDefinition, gateway, logGroup, dataKey, settings);
      addDashboard(this);
    }

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const alb = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc,
      internetFacing: !settings.internal,
      vpcSubnets: { subnetType: settings.internal ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC },
      idleTimeout: Duration.seconds(ALB_IDLE_TIMEOUT_SECS),
      dropInvalidHeaderFields: true,
      xffHeaderProcessingMode: elbv2.XffHeaderProcessingMode.APPEND,
    });
    logAlbAccess(alb, logsBucket, 'alb');

    const service = new ecs.FargateService(this, 'GatewayService', {
      cluster,
      taskDefinition,
      desiredCount: settings.minTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
      healthCheckGracePeriod: Duration.seconds(30),
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
    });
    // Tasks must not start before the keys and config objects exist, or the first rollout fails.
    service.node.addDependency(...seeds);

    const listener = this.listener(alb, vpc, settings);

    const targetGroup = listener.addTargets('Gateway', {
      port: CONTAINER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [service.loadBalancerTarget({ containerName: GATEWAY_CONTAINER, containerPort: CONTAINER_PORT })],
      healthCheck: {
        path: '/healthz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
      // ECS deregisters a stopping task, waits this long, then sends SIGTERM; the gateway then drains
      // what is still in flight for its own grace, within stopTimeout.
      deregistrationDelay: Duration.seconds(settings.drainGraceSecs),
    });

    if (settings.sharedLimits) {
      addSharedLimits(this, vpc, service, gateway, dataKey, settings);
    } else if (settings.maxTasks > 1) {
      Annotations.of(this).addWarning(
        `sharedLimits=false with maxTasks=${settings.maxTasks}: each task counts usage plans alone, so a key `
        + `gets up to ${settings.maxTasks} times its throttle and quota`);
    }
    if (settings.waf) {
      addWebAcl(this, alb, settings);
    }

    const scaling = service.autoScaleTaskCount({ minCapacity: settings.minTasks, maxCapacity: settings.maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: settings.cpuTargetPercent,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });
    scaling.scaleOnRequestCount('Requests', {
      requestsPerTarget: settings.requestsPerTaskPerMinute,
      targetGroup,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });

    skipFrameworkFindings(this);

    new CfnOutput(this, 'Url', {
      value: `${settings.certificateArn ? 'https' : 'http'}://${alb.loadBalancerDnsName}`,
      description: 'Base URL of the API: <Url>/<stage>/<resource path>',
    });
    new CfnOutput(this, 'KeysObject', {
      value: `s3://${keysBucket.bucketName}/${KEYS_OBJECT_KEY}`,
      description: 'Upload the keys file here; running tasks pick it up by ETag without a restart',
    });
    new CfnOutput(this, 'GatewayLogGroup', {
      value: logGroup.logGroupName,
      description: 'The gateway\'s log lines: access log, configuration and keys reloads (aws logs tail)',
    });
    if (config !== undefined) {
      new CfnOutput(this, 'ConfigObject', {
        value: config.url,
        description: 'gateway.yaml: upload a change here; running tasks reload it by ETag without a restart',
      });
    }
    for (const s of settings.stages) {
      new CfnOutput(this, `StageEndpoint${s.stage}`, {
        value: endpointRef(s.endpointName).name,
        description: `SageMaker endpoint of stage ${s.stage} (${s.envVar})`,
      });
    }
  }

  /**
   * The listener: HTTPS on 443 with the certificate, else HTTP on 80 (settings.ts refuses that for
   * an internet-facing ALB unless `allowPlainHttp`). With a certificate nothing listens on 80: a
   * redirect would answer a request whose API key has already crossed the network in clear, and
   * the client would never notice; API Gateway never listened on 80 either.
   */
  private listener(alb: elbv2.ApplicationLoadBalancer, vpc: ec2.IVpc, settings: Settings): elbv2.ApplicationListener {
    const port = settings.certificateArn ? 443 : 80;
    const listener = settings.certificateArn
      ? alb.addListener('Https', {
        port,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [elbv2.ListenerCertificate.fromArn(settings.certificateArn)],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: false,
      })
      : alb.addListener('Http', { port, protocol: elbv2.ApplicationProtocol.HTTP, open: false });
    if (!settings.certificateArn && !settings.internal) {
      Annotations.of(this).addWarning(
        'allowPlainHttp=true: the internet-facing listener is plain HTTP, so API keys cross the internet in clear text');
    }
    const cidrs = settings.ingressCidrs ?? [settings.internal ? vpc.vpcCidrBlock : '0.0.0.0/0'];
    for (const cidr of cidrs) {
      alb.connections.allowFrom(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), `clients on ${port}`);
    }
    return listener;
  }

  /**
   * The stack's customer-managed key: log groups, the limit store's auth token and its data at rest.
   * CloudWatch Logs may use it for this account's and region's log groups only.
   */
  private dataKey(): kms.Key {
    const key = new kms.Key(this, 'DataKey', {
      description: 'sagegate: log groups, the limit store auth token and its data at rest',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    key.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'CloudWatchLogsOfThisAccount',
      principals: [new iam.ServicePrincipal(`logs.${this.region}.${this.urlSuffix}`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: {
        ArnLike: {
          'kms:EncryptionContext:aws:logs:arn': this.formatArn({
            service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        },
      },
    }));
    return key;
  }

  /** The gateway image: the repo's Dockerfile for linux/arm64, or a prebuilt image (`-c gatewayImage=`). */
  private gatewayImage(settings: Settings): ecs.ContainerImage {
    const uri = settings.gatewayImage;
    if (uri === undefined) {
      return ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: 'Dockerfile',
        platform: Platform.LINUX_ARM64,
      });
    }
    // An ECR image goes through fromEcrRepository, which also grants the execution role the pull.
    const m = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9._\/-]+)(?::([\w][\w.-]{0,127})|@(sha256:[a-f0-9]{64}))?$/
      .exec(uri);
    if (m === null) return ecs.ContainerImage.fromRegistry(uri);
    const [, account, region, name, tag, digest] = m;
    const partition = uri.includes('.amazonaws.com.cn/') ? 'aws-cn' : 'aws';
    const repository = ecr.Repository.fromRepositoryAttributes(this, 'GatewayRepository', {
      repositoryName: name,
      repositoryArn: `arn:${partition}:ecr:${region}:${account}:repository/${name}`,
    });
    return ecs.ContainerImage.fromEcrRepository(repository, digest ?? tag ?? 'latest');
  }

  /**
   * Writes the initial keys file when the stack is created, and never again: after that, the
   * object belongs to the operator (`aws s3 cp`), and a later deploy must not roll keys back.
   */
  private seedKeysObject(bucket: s3.Bucket, logGroup: logs.ILogGroup, settings: Settings): Construct {
    const file = settings.initialKeysFile === undefined ? EMPTY_KEYS_FILE : path.resolve(settings.initialKeysFile);
    const body = fs.readFileSync(file, 'utf8');
    // The body lands in the CloudFormation template: hashed entries only, never a key in clear.
    checkHashedOnly(settings.initialKeysFile ?? file, body);
    return this.seedObject('SeedKeysObject', bucket, KEYS_OBJECT_KEY, body, logGroup);
  }

  /**
   * Writes gateway.yaml (`initialConfigFile`, else the repository's) when the config object is
   * created, and never again: after that the object is the operator's (an upload is a reload), and
   * a later deploy must not roll a canary back to the repository's file.
   */
  private seedConfigObject(bucket: s3.Bucket, logGroup: logs.ILogGroup, settings: Settings): Construct {
    const file = settings.initialConfigFile === undefined ? SHIPPED_CONFIG_FILE : path.resolve(settings.initialConfigFile);
    const body = fs.readFileSync(file, 'utf8');
    checkConfigSeed(settings.initialConfigFile ?? file, body);
    return this.seedObject('SeedConfigObject', bucket, CONFIG_OBJECT_KEY, body, logGroup);
  }

  /** One S3 PutObject of `body` at `objectKey`, when the resource is created (no update, no delete). */
  private seedObject(
    id: string, bucket: s3.Bucket, objectKey: string, body: string, logGroup: logs.ILogGroup,
  ): Construct {
    return new cr.AwsCustomResource(this, id, {
      onCreate: {
        service: 'S3',
        action: 'putObject',
        parameters: {
          Bucket: bucket.bucketName,
          Key: objectKey,
          Body: body,
          ContentType: 'application/yaml',
        },
        physicalResourceId: cr.PhysicalResourceId.of(`${objectKey}-seed`),
      },
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [bucket.arnForObjects(objectKey)] }),
      ]),
      installLatestAwsSdk: false,
      // Instead of the CDK's own unencrypted group for its helper function (a singleton: one group
      // for every seed).
      logGroup,
    });
  }

  /**
   * The recommender on SageMaker: one model from the recommender image (linux/amd64, the sample
   * model baked in unless `modelDataUrl` is given), one endpoint config, and one endpoint per distinct
   * endpoint name among the stages. Returns the endpoints by name, with their ARNs (`Ref`).
   */
  private recommenderEndpoints(settings: Settings): Map<string, { name: string; arn: string }> {
    const image = new DockerImageAsset(this, 'RecommenderImage', {
      directory: REPO_ROOT,
      file: 'recommender/Dockerfile',
      platform: Platform.LINUX_AMD64,
    });

    // Everything the role needs is inline, so the model (which references the role) cannot be
    // created before the policy that lets SageMaker pull the image.
    const statements = [
      new iam.PolicyStatement({
        actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
        resources: [image.repository.repositoryArn],
      }),
      // GetAuthorizationToken and PutMetricData have no resource-level permissions.
      new iam.PolicyStatement({ actions: ['ecr:GetAuthorizationToken', 'cloudwatch:PutMetricData'], resources: ['*'] }),
      new iam.PolicyStatement({
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [this.formatArn({
          service: 'logs', resource: 'log-group', resourceName: '/aws/sagemaker/*',
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        })],
      }),
    ];
    if (settings.modelDataUrl !== undefined) {
      const [bucket, ...key] = settings.modelDataUrl.slice('s3://'.length).split('/');
      statements.push(new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [`arn:${this.partition}:s3:::${bucket}/${key.join('/')}`],
      }));
    }
    const role = new iam.Role(this, 'RecommenderExecutionRole', {
      assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
      description: 'SageMaker execution role of the recommender model',
      inlinePolicies: { recommender: new iam.PolicyDocument({ statements }) },
    });

    const model = new sagemaker.CfnModel(this, 'RecommenderModel', {
      executionRoleArn: role.roleArn,
      primaryContainer: {
        image: image.imageUri,
        mode: 'SingleModel',
        modelDataUrl: settings.modelDataUrl,
      },
      // The recommender makes no network call of its own (SageMaker fetches the artifacts before it
      // starts): nothing a request makes it do can reach the network.
      enableNetworkIsolation: true,
    });
    const config = new sagemaker.CfnEndpointConfig(this, 'RecommenderEndpointConfig', {
      productionVariants: [{
        variantName: 'AllTraffic',
        modelName: model.attrModelName,
        initialInstanceCount: settings.modelInstanceCount,
        instanceType: settings.modelInstanceType,
        initialVariantWeight: 1,
      }],
    });

    const endpoints = new Map<string, { name: string; arn: string }>();
    for (const name of new Set(settings.stages.map((s) => s.endpointName))) {
      const endpoint = new sagemaker.CfnEndpoint(this, `RecommenderEndpoint-${name}`, {
        endpointName: name,
        endpointConfigName: config.attrEndpointConfigName,
      });
      // Ref of AWS::SageMaker::Endpoint is the endpoint's ARN; using it also orders the gateway after it.
      endpoints.set(name, { name: endpoint.attrEndpointName, arn: endpoint.ref });
    }
    return endpoints;
  }
}
