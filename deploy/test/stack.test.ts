/**
 * Assertions on the synthesized stack: what the ALB, the Fargate service and the IAM policies must be
 * for the gateway to behave as DESIGN.md says behind an ALB. Each `describe` names the invariant; the
 * stack is synthesized with cdk.json's context, like `cdk synth`, plus `-c`-style overrides.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import {
  ALB_IDLE_TIMEOUT_SECS, GATEWAY_KEEP_ALIVE_SECS, MAX_ROUTE_TIMEOUT_SECS,
} from '../lib/settings';
import { EMPTY_KEYS_FILE } from '../lib/sagegate-stack';
import {
  CERT, CfnTemplate, Synthesized, allStatements, endpointArn, gatewayContainer, gatewayEnv, render, resources,
  roleStatements, single, synth, taskRoleId,
} from './helpers';

const KEYS_OBJECT_ARN = '${KeysBucketC65599E5.Arn}/keys.yaml';
const CONFIG_OBJECT_ARN = '${KeysBucketC65599E5.Arn}/gateway.yaml';

/** The custom resource that seeds the keys object (another one seeds gateway.yaml). */
function keysSeed(json: CfnTemplate): [string, any] {
  const found = resources(json, 'Custom::AWS').filter(([id]) => id.startsWith('SeedKeysObject'));
  assert.equal(found.length, 1);
  return found[0];
}

/** The ALB security group's ingress rules as `cidr:port`. */
function albIngress(json: CfnTemplate): string[] {
  const [, sg] = resources(json, 'AWS::EC2::SecurityGroup').find(([id]) => id.startsWith('AlbSecurityGroup'))!;
  return (sg.SecurityGroupIngress ?? []).map((r: any) => `${render(r.CidrIp)}:${r.FromPort}-${r.ToPort}`);
}

let plain: Synthesized;
before(() => {
  plain = synth();
});

describe('listener: HTTPS unless asked otherwise by name', () => {
  test('with a certificate: HTTPS on 443 only, TLS 1.3/1.2 policy, open to the internet on 443 only', () => {
    const listeners = resources(plain.json, 'AWS::ElasticLoadBalancingV2::Listener');
    assert.equal(listeners.length, 1, 'nothing listens on 80: no redirect for a key already sent in clear');
    plain.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: CERT }],
      SslPolicy: Match.stringLikeRegexp('^ELBSecurityPolicy-TLS13'),
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    assert.deepEqual(albIngress(plain.json), ['0.0.0.0/0:443-443']);
    assert.match(render(plain.json.Outputs?.Url?.Value), /^https:\/\//);
    assert.deepEqual(plain.warnings, []);
  });

  test('without a certificate an internet-facing stack is refused, naming the three ways out', () => {
    assert.throws(
      () => synth({ certificateArn: '' }),
      (e: Error) => ['certificateArn', '-c internal=true', '-c allowPlainHttp=true'].every((s) => e.message.includes(s)),
    );
  });

  test('internal=true: an internal ALB in the private subnets, HTTP on 80, open to the VPC only', () => {
    const s = synth({ certificateArn: '', internal: 'true' });
    const [, alb] = single(s.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    assert.equal(alb.Scheme, 'internal');
    for (const subnet of alb.Subnets) assert.match(render(subnet), /PrivateSubnet/);
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 80, Protocol: 'HTTP' });
    assert.deepEqual(albIngress(s.json), ['${Vpc8378EB38.CidrBlock}:80-80']);
    assert.match(render(s.json.Outputs?.Url?.Value), /^http:\/\//);
  });

  test('allowPlainHttp=true: internet-facing HTTP on 80, with a synth warning', () => {
    const s = synth({ certificateArn: '', allowPlainHttp: 'true' });
    const [, alb] = single(s.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    assert.equal(alb.Scheme, 'internet-facing');
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 80, Protocol: 'HTTP' });
    assert.deepEqual(albIngress(s.json), ['0.0.0.0/0:80-80']);
    assert.ok(s.warnings.some((w) => w.includes('API keys cross the internet in clear text')), s.warnings.join('\n'));
  });

  test('ingressCidrs narrows who may connect', () => {
    const s = synth({ ingressCidrs: '203.0.113.0/24, 198.51.100.7/32' });
    assert.deepEqual(albIngress(s.json).sort(), ['198.51.100.7/32:443-443', '203.0.113.0/24:443-443']);
    assert.throws(() => synth({ ingressCidrs: '203.0.113.0/33' }), /ingressCidrs/);
  });

  test('a malformed certificate ARN is refused at synth', () => {
    assert.throws(() => synth({ certificateArn: 'arn:aws:iam::123456789012:role/x' }), /certificateArn/);
  });
});

describe('load balancer timeouts and health', () => {
  test('idle timeout is above the longest route timeout and below the gateway keep-alive', () => {
    const [, alb] = single(plain.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const attrs = Object.fromEntries(alb.LoadBalancerAttributes.map((a: any) => [a.Key, a.Value]));
    const idle = Number(attrs['idle_timeout.timeout_seconds']);
    assert.equal(idle, ALB_IDLE_TIMEOUT_SECS);
    assert.ok(idle > MAX_ROUTE_TIMEOUT_SECS, `idle ${idle} <= route timeout ${MAX_ROUTE_TIMEOUT_SECS}`);
    assert.ok(idle < GATEWAY_KEEP_ALIVE_SECS, `idle ${idle} >= keep-alive ${GATEWAY_KEEP_ALIVE_SECS}`);
    // The gateway trusts one X-Forwarded-For hop: the ALB must append, not pass through a client's.
    assert.equal(attrs['routing.http.xff_header_processing.mode'], 'append');
    assert.equal(attrs['routing.http.drop_invalid_header_fields.enabled'], 'true');
    assert.equal(alb.Scheme, 'internet-facing');
  });

  test('target group checks /healthz on the gateway port, targets are task IPs', () => {
    plain.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/healthz',
      Matcher: { HttpCode: '200' },
      Port: 8080,
      Protocol: 'HTTP',
      TargetType: 'ip',
    });
  });
});

describe('drain: deregistration, SIGTERM, stopTimeout', () => {
  const drainTimes = (s: Synthesized) => {
    const [, tg] = single(s.json, 'AWS::ElasticLoadBalancingV2::TargetGroup');
    const attrs = Object.fromEntries(tg.TargetGroupAttributes.map((a: any) => [a.Key, a.Value]));
    return {
      deregistration: Number(attrs['deregistration_delay.timeout_seconds']),
      stopTimeout: gatewayContainer(s.json).StopTimeout as number,
      grace: Number(gatewayEnv(s.json).SAGEGATE_DRAIN_GRACE_SECS),
    };
  };

  test('defaults: 30 s deregistration, 30 s drain grace, SIGKILL only after 40 s', () => {
    assert.deepEqual(drainTimes(plain), { deregistration: 30, stopTimeout: 40, grace: 30 });
  });

  test('a different drain grace moves all three together', () => {
    const t = drainTimes(synth({ drainGraceSecs: '55' }));
    assert.equal(t.grace, 55);
    assert.equal(t.deregistration, t.grace);
    assert.ok(t.stopTimeout > t.grace, 'the gateway must finish draining before SIGKILL');
    assert.ok(t.stopTimeout <= 120, 'Fargate caps stopTimeout at 120 s');
  });

  test('a drain grace ECS cannot honour is refused', () => {
    assert.throws(() => synth({ drainGraceSecs: '115' }), /drainGraceSecs/);
  });
});

describe('task definition', () => {
  test('runs on ARM64 Linux', () => {
    plain.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    });
  });

  test('the gateway image is built from the repo Dockerfile for linux/arm64', () => {
    const images = Object.values(plain.assets.dockerImages ?? {});
    assert.equal(images.length, 1);
    assert.equal(images[0].source.platform, 'linux/arm64');
    assert.equal(images[0].source.dockerFile, 'Dockerfile');
  });

  test('container: read-only root, nofile 65535, self health check, non-blocking logs', () => {
    const c = gatewayContainer(plain.json);
    assert.equal(c.ReadonlyRootFilesystem, true);
    assert.deepEqual(c.Ulimits, [{ Name: 'nofile', SoftLimit: 65535, HardLimit: 65535 }]);
    assert.deepEqual(c.HealthCheck.Command, ['CMD', '/usr/local/bin/sagegate', 'healthcheck']);
    assert.deepEqual(c.PortMappings, [{ ContainerPort: 8080, Protocol: 'tcp' }]);
    assert.equal(c.LogConfiguration.LogDriver, 'awslogs');
    assert.equal(c.LogConfiguration.Options.mode, 'non-blocking');
    assert.equal(c.LogConfiguration.Options['max-buffer-size'], '26214400b') // 25 MiB;
    const logGroupId = c.LogConfiguration.Options['awslogs-group'].Ref;
    assert.equal(plain.json.Resources[logGroupId].Properties.RetentionInDays, 30);
  });

  test('environment: endpoints per stage, region, one trusted hop, keys from the S3 object', () => {
    const env = gatewayEnv(plain.json);
    assert.equal(env.SAGEGATE_ENDPOINT_TEMP, 'movie-recommender-temp');
    assert.equal(env.SAGEGATE_ENDPOINT_PROD, 'movie-recommender-prod');
    assert.equal(env.AWS_REGION, '${AWS::Region}');
    assert.equal(env.SAGEGATE_TRUSTED_HOPS, '1');
    assert.equal(env.SAGEGATE_KEYS, 's3://${KeysBucketC65599E5}/keys.yaml');
    assert.equal(env.SAGEGATE_ROUTE_TIMEOUT_MS, undefined);
    // Local-stack settings must not leak into AWS.
    assert.equal(env.AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, undefined);
    assert.equal(env.AWS_ACCESS_KEY_ID, undefined);
  });

  test('a route timeout override is passed through and bounded by 60 s', () => {
    assert.equal(gatewayEnv(synth({ routeTimeoutMs: '60000' }).json).SAGEGATE_ROUTE_TIMEOUT_MS, '60000');
    assert.throws(() => synth({ routeTimeoutMs: '61000' }), /routeTimeoutMs/);
  });

  test('a prebuilt ECR image replaces the asset, and the execution role may pull it', () => {
    const uri = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagegate:1.2.3';
    const s = synth({ gatewayImage: uri });
    assert.equal(Object.keys(s.assets.dockerImages ?? {}).length, 0);
    const image = render(gatewayContainer(s.json).Image);
    assert.match(image, /^123456789012\.dkr\.ecr\.eu-west-1\.\$\{AWS::URLSuffix\}\/sagegate:1\.2\.3$/);
    const [, task] = single(s.json, 'AWS::ECS::TaskDefinition');
    const executionRole = task.ExecutionRoleArn['Fn::GetAtt'][0];
    const pull = roleStatements(s.json, executionRole).find((st) => st.actions.includes('ecr:BatchGetImage'));
    assert.deepEqual(pull?.resources, ['arn:aws:ecr:eu-west-1:123456789012:repository/sagegate']);
  });

  test('a public image is used as given', () => {
    const s = synth({ gatewayImage: 'ghcr.io/example/sagegate:1.0.0' });
    assert.equal(gatewayContainer(s.json).Image, 'ghcr.io/example/sagegate:1.0.0');
  });
});

describe('IAM: the task role', () => {
  test('may invoke exactly the configured endpoints and read exactly the keys and config objects', () => {
    // Without the collector sidecar, whose own permissions are in observability.test.ts.
    const bare = synth({ observability: 'false' });
    const statements = roleStatements(bare.json, taskRoleId(bare.json));
    const byAction = (a: string) => statements.filter((s) => s.actions.includes(a));
    for (const action of ['sagemaker:InvokeEndpoint', 'sagemaker:InvokeEndpointWithResponseStream']) {
      assert.deepEqual(
        byAction(action).flatMap((s) => s.resources).sort(),
        [endpointArn('movie-recommender-prod'), endpointArn('movie-recommender-temp')],
        action,
      );
    }
    assert.deepEqual(byAction('s3:GetObject').flatMap((s) => s.resources).sort(), [CONFIG_OBJECT_ARN, KEYS_OBJECT_ARN]);
    // Nothing else: no list, no write, no other service.
    assert.deepEqual(
      [...new Set(statements.flatMap((s) => s.actions))].sort(),
      ['s3:GetObject', 'sagemaker:InvokeEndpoint', 'sagemaker:InvokeEndpointWithResponseStream'],
    );
    assert.ok(statements.every((s) => s.effect === 'Allow'));
  });

  test('no policy in the stack grants either action on a wildcard resource', () => {
    for (const s of allStatements(synth({ deployModel: 'true', modelDataUrl: 's3://models-bucket/r/model.tar.gz' }).json)) {
      if (!s.actions.some((a) => a === 'sagemaker:InvokeEndpoint' || a === 's3:GetObject' || a.includes('*'))) continue;
      assert.ok(
        s.resources.every((r) => !r.includes('*')),
        `${s.policy}: ${s.actions.join(',')} on ${s.resources.join(',')}`,
      );
    }
  });

  test('stage endpoints come from the context, and ARNs use the lower-cased name', () => {
    const s = synth({ stageEndpoints: '{"temp":"Recsys-Canary","prod":"recsys-main","eu-prod":"recsys-eu"}' });
    const env = gatewayEnv(s.json);
    assert.equal(env.SAGEGATE_ENDPOINT_TEMP, 'Recsys-Canary');
    assert.equal(env.SAGEGATE_ENDPOINT_PROD, 'recsys-main');
    assert.equal(env.SAGEGATE_ENDPOINT_EU_PROD, 'recsys-eu');
    const invoke = roleStatements(s.json, taskRoleId(s.json))
      .filter((st) => st.actions.includes('sagemaker:InvokeEndpoint'))
      .flatMap((st) => st.resources)
      .sort();
    assert.deepEqual(invoke, ['recsys-canary', 'recsys-eu', 'recsys-main'].map(endpointArn));
  });
});

describe('keys bucket', () => {
  test('encrypted, versioned, no public access, TLS only, kept on stack deletion', () => {
    plain.template.hasResource('AWS::S3::Bucket', {
      Properties: {
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        VersioningConfiguration: { Status: 'Enabled' },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
        },
      },
      DeletionPolicy: 'Retain',
    });
    plain.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({
          Effect: 'Deny',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        })]),
      },
    });
  });

  test('an empty key set (the same file the image defaults to) is written once at creation, before the service starts', () => {
    const [seedId, seed] = keysSeed(plain.json);
    const create = JSON.parse(render(seed.Create));
    assert.equal(create.action, 'putObject');
    assert.equal(create.parameters.Key, 'keys.yaml');
    assert.equal(create.parameters.Body, fs.readFileSync(EMPTY_KEYS_FILE, 'utf8'));
    assert.match(create.parameters.Body, /^usage_plans: \[\]$/m);
    assert.match(create.parameters.Body, /^keys: \[\]$/m);
    // Create only: a later deploy never overwrites keys an operator has uploaded since.
    assert.equal(seed.Update, undefined);
    const [, service] = Object.entries(plain.json.Resources).find(([, r]) => r.Type === 'AWS::ECS::Service')!;
    assert.ok(service.DependsOn?.includes(seedId), 'service must wait for the keys object');
  });

  test('an initial keys file is seeded when it holds hashed keys only', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagegate-keys-'));
    try {
      const hashed = path.join(dir, 'hashed.yaml');
      fs.writeFileSync(hashed, [
        'usage_plans:',
        '  - id: standard',
        '    stages: [temp, prod]',
        '    throttle: { rate_limit: 10, burst_limit: 20 }',
        'keys:',
        '  - id: partner-a',
        '    usage_plans: [standard]',
        `    value_sha256: "${'ab'.repeat(32)}"`,
        '',
      ].join('\n'));
      const [, seed] = keysSeed(synth({ initialKeysFile: hashed }).json);
      assert.equal(JSON.parse(render(seed.Create)).parameters.Body, fs.readFileSync(hashed, 'utf8'));

      // Every YAML form is covered in keys-file.test.ts; here, the flow form a line pattern missed
      // stops the synth.
      const clear = path.join(dir, 'clear.yaml');
      fs.writeFileSync(clear, 'usage_plans: []\nkeys: [{id: a, usage_plans: [p], value: "a-key-in-clear-text-123"}]\n');
      assert.throws(() => synth({ initialKeysFile: clear }), /clear\.yaml:2:34: plain `value:`/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('service and autoscaling', () => {
  test('at least two tasks, rolling back a failed deployment, never below full capacity', () => {
    plain.template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DesiredCount: 2,
      HealthCheckGracePeriodSeconds: 30,
      DeploymentConfiguration: Match.objectLike({
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      }),
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
  });

  test('scales 2..10 on CPU and on ALB requests per target', () => {
    plain.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 2,
      MaxCapacity: 10,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    const policies = resources(plain.json, 'AWS::ApplicationAutoScaling::ScalingPolicy')
      .map(([, p]) => p.TargetTrackingScalingPolicyConfiguration);
    const metrics = policies.map((p) => p.PredefinedMetricSpecification.PredefinedMetricType).sort();
    assert.deepEqual(metrics, ['ALBRequestCountPerTarget', 'ECSServiceAverageCPUUtilization']);
    const cpu = policies.find((p) => p.PredefinedMetricSpecification.PredefinedMetricType.startsWith('ECS'));
    assert.equal(cpu.TargetValue, 60);
  });

  test('bounds come from the context and are checked', () => {
    const s = synth({ minTasks: '3', maxTasks: '6' });
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 3, MaxCapacity: 6 });
    s.template.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 3 });
    assert.throws(() => synth({ minTasks: '5', maxTasks: '4' }), /maxTasks \(4\) must be >= minTasks \(5\)/);
  });
});

describe('SageMaker endpoint for the recommender (-c deployModel=true)', () => {
  test('absent by default', () => {
    for (const type of ['AWS::SageMaker::Model', 'AWS::SageMaker::EndpointConfig', 'AWS::SageMaker::Endpoint']) {
      assert.equal(resources(plain.json, type).length, 0, type);
    }
  });

  let model: Synthesized;
  before(() => {
    model = synth({ deployModel: 'true' });
  });

  test('model from the recommender image (linux/amd64), with its own execution role', () => {
    const images = Object.values(model.assets.dockerImages ?? {});
    const recommender = images.find((i) => i.source.dockerFile === 'recommender/Dockerfile');
    assert.equal(recommender?.source.platform, 'linux/amd64');
    const [, m] = single(model.json, 'AWS::SageMaker::Model');
    assert.equal(m.PrimaryContainer.Mode, 'SingleModel');
    assert.match(render(m.PrimaryContainer.Image), /container-assets.*:[0-9a-f]{64}$/);
    const roleId = m.ExecutionRoleArn['Fn::GetAtt'][0];
    const role = model.json.Resources[roleId].Properties;
    assert.equal(role.AssumeRolePolicyDocument.Statement[0].Principal.Service, 'sagemaker.amazonaws.com');
    const pull = roleStatements(model.json, roleId).find((s) => s.actions.includes('ecr:BatchGetImage'));
    assert.ok(pull && pull.resources.every((r) => !r.includes('*')));
  });

  test('one endpoint per configured name, and the gateway invokes exactly those', () => {
    const [, config] = single(model.json, 'AWS::SageMaker::EndpointConfig');
    assert.deepEqual(config.ProductionVariants.map((v: any) => v.InstanceType), ['ml.m5.large']);
    const endpoints = resources(model.json, 'AWS::SageMaker::Endpoint');
    assert.deepEqual(endpoints.map(([, e]) => e.EndpointName).sort(), ['movie-recommender-prod', 'movie-recommender-temp']);
    const invoke = roleStatements(model.json, taskRoleId(model.json))
      .filter((s) => s.actions.includes('sagemaker:InvokeEndpoint'))
      .flatMap((s) => s.resources)
      .sort();
    // Ref of AWS::SageMaker::Endpoint is its ARN.
    assert.deepEqual(invoke, endpoints.map(([id]) => `\${${id}}`).sort());
    const env = gatewayEnv(model.json);
    const byName = Object.fromEntries(endpoints.map(([id, e]) => [e.EndpointName, `\${${id}.EndpointName}`]));
    assert.equal(env.SAGEGATE_ENDPOINT_TEMP, byName['movie-recommender-temp']);
    assert.equal(env.SAGEGATE_ENDPOINT_PROD, byName['movie-recommender-prod']);
  });

  test('stages sharing an endpoint name share one endpoint', () => {
    const s = synth({ deployModel: 'true', stageEndpoints: '{"temp":"recsys","prod":"recsys"}' });
    assert.equal(resources(s.json, 'AWS::SageMaker::Endpoint').length, 1);
  });

  test('real artifacts: ModelDataUrl set, and the role may read that object only', () => {
    const s = synth({ deployModel: 'true', modelDataUrl: 's3://models-bucket/recommender/model.tar.gz' });
    const [, m] = single(s.json, 'AWS::SageMaker::Model');
    assert.equal(m.PrimaryContainer.ModelDataUrl, 's3://models-bucket/recommender/model.tar.gz');
    const get = roleStatements(s.json, m.ExecutionRoleArn['Fn::GetAtt'][0]).filter((st) => st.actions.includes('s3:GetObject'));
    assert.deepEqual(get.flatMap((st) => st.resources), ['arn:${AWS::Partition}:s3:::models-bucket/recommender/model.tar.gz']);
  });
});
