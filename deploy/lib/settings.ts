/**
 * Deployment settings: the CDK context (cdk.json's `context`, overridden by `-c key=value` on the
 * command line) read, checked and turned into one typed object before any resource is defined.
 *
 * Input: a construct node's context. Values given with `-c` arrive as strings, values from cdk.json
 * keep their JSON type, so every reader accepts both (`-c deployModel=true` and `"deployModel": true`).
 * Output: `Settings`, or one `Error` that lists every problem found (not only the first).
 * Invariants: stage names and SageMaker endpoint names are valid and the stage map is not empty;
 * the drain grace fits ECS's 120 s stop timeout; a route timeout, when given, is within the
 * gateway's 60 s ceiling (the ALB idle timeout of 65 s is chosen above it); an internet-facing
 * load balancer has a certificate unless plain HTTP was asked for by name (`allowPlainHttp`), because
 * every request carries its API key in a header; an S3 object the task role reads is named exactly
 * (no IAM wildcard can hide in its key), and the gateway.yaml options that only make sense together
 * are refused apart.
 */
import { Node } from 'constructs';

/** One API stage and the SageMaker endpoint its routes invoke. */
export interface StageEndpoint {
  /** Stage name, the first URL segment (`temp` in `/temp/recommended-movies/...`). */
  readonly stage: string;
  /** SageMaker endpoint name, as given (SageMaker treats it case-insensitively). */
  readonly endpointName: string;
  /** Environment variable the shipped gateway.yaml reads for this stage: `SAGEGATE_ENDPOINT_TEMP`. */
  readonly envVar: string;
}

export interface Settings {
  /** Stages in the order given; the gateway config decides which of them it serves. */
  readonly stages: StageEndpoint[];
  /**
   * ACM certificate ARN: HTTPS on 443, and nothing on 80 (API Gateway never answered plain HTTP
   * either). Without it, HTTP on 80, which an internet-facing ALB only gets with `allowPlainHttp`.
   */
  readonly certificateArn?: string;
  /** An internal ALB (private subnets, reachable from the VPC and what is routed to it) instead of an internet-facing one. */
  readonly internal: boolean;
  /** Accept an internet-facing ALB without a certificate: API keys then cross the internet in clear text. */
  readonly allowPlainHttp: boolean;
  /**
   * Who may connect to the listener: CIDR blocks. Default: anyone (`0.0.0.0/0`) for an
   * internet-facing ALB; the VPC's own range for an internal one.
   */
  readonly ingressCidrs?: string[];
  /** A prebuilt gateway image (ECR or public registry URI) instead of building the repo's Dockerfile. */
  readonly gatewayImage?: string;
  /** Also create the SageMaker model, endpoint config and one endpoint per distinct endpoint name. */
  readonly deployModel: boolean;
  /** SageMaker hosting instance type for the recommender (x86_64: the image is built for linux/amd64). */
  readonly modelInstanceType: string;
  /** Instances per endpoint. */
  readonly modelInstanceCount: number;
  /** Optional `s3://…/model.tar.gz` with real artifacts; without it the image's baked-in sample model serves. */
  readonly modelDataUrl?: string;
  /** Keys file written to S3 once, when the stack is created (hashed entries only). Empty key set if absent. */
  readonly initialKeysFile?: string;
  /** Fargate tasks: autoscaling floor (also the initial desired count) and ceiling. */
  readonly minTasks: number;
  readonly maxTasks: number;
  /** Target for the request-count policy, in requests per task per minute (the ALB metric's unit). */
  readonly requestsPerTaskPerMinute: number;
  /** Target for the CPU policy, percent. */
  readonly cpuTargetPercent: number;
  /** The gateway's drain grace after SIGTERM, seconds (`SAGEGATE_DRAIN_GRACE_SECS`). */
  readonly drainGraceSecs: number;
  /** Optional override of the routes' default integration timeout, ms (`SAGEGATE_ROUTE_TIMEOUT_MS`). */
  readonly routeTimeoutMs?: number;
  /**
   * The ADOT collector sidecar: OTLP traces from the gateway → AWS X-Ray, and the gateway's
   * Prometheus metrics (127.0.0.1:9090) → CloudWatch through EMF. See deploy/observability.md.
   */
  readonly observability: boolean;
  /** Share of new traces the gateway records (callers' own sampling decisions are followed). */
  readonly traceSampleRatio: number;
  /** The collector image (multi-arch; pinned so a deploy never changes the collector by surprise). */
  readonly collectorImage: string;
  /**
   * Usage-plan limits shared by every task in an ElastiCache Valkey replication group
   * (`limits.store: redis`). Default: on when `maxTasks > 1`, since N tasks counting alone admit up
   * to N times every limit.
   */
  readonly sharedLimits: boolean;
  /** ElastiCache node type of the limit store's two nodes (primary and replica). */
  readonly cacheNodeType: string;
  /** `limits.on_store_failure` while the limit store is unreachable: `local` (fail open per task) or `deny` (503). */
  readonly limitsOnStoreFailure: 'local' | 'deny';
  /** An AWS WAF web ACL on the ALB: AWS's common rule set and a per-address rate limit. */
  readonly waf: boolean;
  /** The WAF's per-address limit: requests in any 5-minute window, counted per client IP. */
  readonly wafRateLimit: number;
  /** Days the ALB's access logs and the keys bucket's access logs are kept in the logs bucket. */
  readonly accessLogDays: number;
  /**
   * Where the gateway reads gateway.yaml: `s3` (an S3 object polled by ETag, so a canary share,
   * shadow, stage variable, throttle or template change is an upload) or `image` (the file baked
   * into the image, so every change is a new image and a rolling deployment).
   */
  readonly gatewayConfig: 's3' | 'image';
  /** An existing `s3://bucket/key` gateway.yaml to read instead of the object the stack creates. */
  readonly configObject?: S3Object;
  /** The KMS key that encrypts `configObject` (an SSE-KMS bucket): the task role may decrypt with it through S3. */
  readonly configKmsKeyArn?: string;
  /** gateway.yaml written to the stack's config object once, at creation; the repo's config/gateway.yaml if absent. */
  readonly initialConfigFile?: string;
  /**
   * SageMaker endpoints that a canary (`stage_variable_overrides`) or a shadow names besides the
   * stages' own: the task role may invoke them too.
   */
  readonly rolloutEndpoints: string[];
}

/** An S3 object named by `s3://bucket/key`. */
export interface S3Object {
  readonly bucket: string;
  readonly key: string;
}

/** The ADOT collector release the stack runs unless `-c collectorImage=` says otherwise. */
export const DEFAULT_COLLECTOR_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0';

/** The gateway's longest allowed integration timeout; the ALB idle timeout must exceed it. */
export const MAX_ROUTE_TIMEOUT_SECS = 60;
/** The gateway's HTTP keep-alive; the ALB idle timeout must stay below it, or the ALB sees resets. */
export const GATEWAY_KEEP_ALIVE_SECS = 75;
/** ALB idle timeout: above the longest route timeout, below the gateway's keep-alive. */
export const ALB_IDLE_TIMEOUT_SECS = 65;
/** ECS sends SIGKILL this long after SIGTERM at most (Fargate's ceiling for stopTimeout). */
const ECS_MAX_STOP_TIMEOUT_SECS = 120;
/** Headroom between the end of the gateway's drain and ECS's SIGKILL. */
export const STOP_HEADROOM_SECS = 10;

const STAGE_RE = /^[A-Za-z0-9_-]{1,64}$/;
// SageMaker's EndpointName pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
const ENDPOINT_RE = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;
const CERT_RE = /^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[A-Za-z0-9-]+$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const CACHE_NODE_RE = /^cache\.[a-z0-9]+\.[a-z0-9]+$/;
// S3 bucket naming rules (lower case, digits, dots, dashes; 3 to 63) and a key of at most 1024
// characters. `*`, `?` and `$` are refused in the key: in an IAM resource they are wildcards and
// policy variables, and the grant must name exactly one object.
const S3_OBJECT_RE = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/([^*?$]{1,1024})$/;
// A key ARN (not an alias: IAM authorizes KMS use by key ARN).
const KMS_KEY_RE = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

/** Reads and checks the settings; throws one error listing every problem. */
export function readSettings(node: Node): Settings {
  const problems: string[] = [];
  const ctx = (key: string): unknown => node.tryGetContext(key);

  const stages = readStages(ctx('stageEndpoints'), problems);
  const certificateArn = optString(ctx('certificateArn'));
  if (certificateArn !== undefined && !CERT_RE.test(certificateArn)) {
    problems.push(`certificateArn: not an ACM certificate ARN: ${certificateArn}`);
  }
  const internal = readBool('internal', ctx('internal'), false, problems);
  const allowPlainHttp = readBool('allowPlainHttp', ctx('allowPlainHttp'), false, problems);
  if (certificateArn === undefined && !internal && !allowPlainHttp) {
    problems.push(
      'certificateArn: an internet-facing load balancer needs a certificate, or every API key crosses the '
      + 'internet in clear text; give -c certificateArn=arn:aws:acm:…, or -c internal=true for an ALB '
      + 'reachable only from inside the VPC, or -c allowPlainHttp=true to accept plain HTTP anyway');
  }
  const ingressCidrs = readCidrs('ingressCidrs', ctx('ingressCidrs'), problems);
  const gatewayImage = optString(ctx('gatewayImage'));
  const deployModel = readBool('deployModel', ctx('deployModel'), false, problems);
  const modelInstanceType = optString(ctx('modelInstanceType')) ?? 'ml.m5.large';
  if (!/^ml\.[a-z0-9]+\.[a-z0-9]+$/.test(modelInstanceType)) {
    problems.push(`modelInstanceType: not a SageMaker instance type: ${modelInstanceType}`);
  }
  const modelInstanceCount = readInt('modelInstanceCount', ctx('modelInstanceCount'), 1, 1, 100, problems);
  const modelDataUrl = optString(ctx('modelDataUrl'));
  if (modelDataUrl !== undefined && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+/.test(modelDataUrl)) {
    problems.push(`modelDataUrl: expected s3://bucket/key, got ${modelDataUrl}`);
  }
  const initialKeysFile = optString(ctx('initialKeysFile'));
  const minTasks = readInt('minTasks', ctx('minTasks'), 2, 1, 1000, problems);
  const maxTasks = readInt('maxTasks', ctx('maxTasks'), 10, 1, 1000, problems);
  if (maxTasks < minTasks) {
    problems.push(`maxTasks (${maxTasks}) must be >= minTasks (${minTasks})`);
  }
  const requestsPerTaskPerMinute = readInt(
    'requestsPerTaskPerMinute', ctx('requestsPerTaskPerMinute'), 30000, 1, 10_000_000, problems);
  const cpuTargetPercent = readInt('cpuTargetPercent', ctx('cpuTargetPercent'), 60, 10, 95, problems);
  const drainGraceSecs = readInt(
    'drainGraceSecs', ctx('drainGraceSecs'), 30, 1, ECS_MAX_STOP_TIMEOUT_SECS - STOP_HEADROOM_SECS, problems);
  const rawRouteTimeout = ctx('routeTimeoutMs');
  const routeTimeoutMs = rawRouteTimeout === undefined
    ? undefined
    : readInt('routeTimeoutMs', rawRouteTimeout, 29000, 1, MAX_ROUTE_TIMEOUT_SECS * 1000, problems);

  const observability = readBool('observability', ctx('observability'), true, problems);
  const traceSampleRatio = readRatio('traceSampleRatio', ctx('traceSampleRatio'), 0.01, problems);
  const collectorImage = optString(ctx('collectorImage')) ?? DEFAULT_COLLECTOR_IMAGE;

  const sharedLimits = readBool('sharedLimits', ctx('sharedLimits'), maxTasks > 1, problems);
  const cacheNodeType = optString(ctx('cacheNodeType')) ?? 'cache.t4g.micro';
  if (!CACHE_NODE_RE.test(cacheNodeType)) {
    problems.push(`cacheNodeType: not an ElastiCache node type: ${cacheNodeType}`);
  }
  const limitsOnStoreFailure = optString(ctx('limitsOnStoreFailure')) ?? 'local';
  if (limitsOnStoreFailure !== 'local' && limitsOnStoreFailure !== 'deny') {
    problems.push(`limitsOnStoreFailure: expected local or deny, got ${JSON.stringify(limitsOnStoreFailure)}`);
  }
  const waf = readBool('waf', ctx('waf'), false, problems);
  // WAF's floor for a rate-based rule is 10 requests per window; its ceiling is 2e9.
  const wafRateLimit = readInt('wafRateLimit', ctx('wafRateLimit'), 6000, 10, 2_000_000_000, problems);
  const accessLogDays = readInt('accessLogDays', ctx('accessLogDays'), 90, 1, 3650, problems);

  const gatewayConfig = optString(ctx('gatewayConfig')) ?? 's3';
  if (gatewayConfig !== 's3' && gatewayConfig !== 'image') {
    problems.push(`gatewayConfig: expected s3 or image, got ${JSON.stringify(gatewayConfig)}`);
  }
  const configObjectGiven = optString(ctx('configObject')) !== undefined;
  const configObject = readS3Object('configObject', ctx('configObject'), problems);
  const configKmsKeyArn = optString(ctx('configKmsKeyArn'));
  if (configKmsKeyArn !== undefined && !KMS_KEY_RE.test(configKmsKeyArn)) {
    problems.push(`configKmsKeyArn: not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>; not an alias): ${configKmsKeyArn}`);
  }
  const initialConfigFile = optString(ctx('initialConfigFile'));
  if (gatewayConfig === 'image') {
    for (const [key, given] of [['configObject', configObjectGiven], ['configKmsKeyArn', configKmsKeyArn !== undefined],
      ['initialConfigFile', initialConfigFile !== undefined]] as const) {
      if (given) {
        problems.push(`${key}: only with gatewayConfig=s3 (gatewayConfig=image reads the file baked into the image)`);
      }
    }
  }
  if (configKmsKeyArn !== undefined && !configObjectGiven) {
    problems.push('configKmsKeyArn: only with configObject (the config object the stack creates is SSE-S3 encrypted)');
  }
  if (initialConfigFile !== undefined && configObjectGiven) {
    problems.push('initialConfigFile: not with configObject (the stack writes nothing to an object it does not own)');
  }
  const rolloutEndpoints = readEndpointList('rolloutEndpoints', ctx('rolloutEndpoints'), problems);

  if (problems.length > 0) {
    throw new Error(`invalid deployment context:\n  ${problems.join('\n  ')}`);
  }
  return {
    stages, certificateArn, internal, allowPlainHttp, ingressCidrs, gatewayImage, deployModel,
    modelInstanceType, modelInstanceCount, modelDataUrl, initialKeysFile, minTasks, maxTasks,
    requestsPerTaskPerMinute, cpuTargetPercent, drainGraceSecs, routeTimeoutMs, observability,
    traceSampleRatio, collectorImage, sharedLimits, cacheNodeType,
    limitsOnStoreFailure: limitsOnStoreFailure as 'local' | 'deny', waf, wafRateLimit, accessLogDays,
    gatewayConfig: gatewayConfig as 's3' | 'image', configObject, configKmsKeyArn, initialConfigFile,
    rolloutEndpoints,
  };
}

/** `SAGEGATE_ENDPOINT_<STAGE>`: upper case, `-` becomes `_` (environment names allow no dashes). */
export function endpointEnvVar(stage: string): string {
  return `SAGEGATE_ENDPOINT_${stage.toUpperCase().replace(/-/g, '_')}`;
}

function readStages(raw: unknown, problems: string[]): StageEndpoint[] {
  let value = raw;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (e) {
      problems.push(`stageEndpoints: not JSON: ${(e as Error).message}`);
      return [];
    }
  }
  if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) {
    problems.push('stageEndpoints: expected an object {"<stage>": "<endpoint name>", ...}');
    return [];
  }
  const stages: StageEndpoint[] = [];
  const envVars = new Map<string, string>();
  for (const [stage, endpoint] of Object.entries(value as Record<string, unknown>)) {
    if (!STAGE_RE.test(stage) || stage === 'healthz') {
      problems.push(`stageEndpoints.${stage}: invalid stage name (letters, digits, _ and -; not "healthz")`);
      continue;
    }
    if (typeof endpoint !== 'string' || !ENDPOINT_RE.test(endpoint)) {
      problems.push(`stageEndpoints.${stage}: invalid SageMaker endpoint name: ${JSON.stringify(endpoint)}`);
      continue;
    }
    const envVar = endpointEnvVar(stage);
    const clash = envVars.get(envVar);
    if (clash !== undefined) {
      problems.push(`stageEndpoints.${stage}: same environment variable ${envVar} as stage ${clash}`);
      continue;
    }
    envVars.set(envVar, stage);
    stages.push({ stage, endpointName: endpoint, envVar });
  }
  if (stages.length === 0 && problems.length === 0) {
    problems.push('stageEndpoints: at least one stage is required');
  }
  return stages;
}

/** A comma-separated list (`-c`) or a JSON array (cdk.json), items trimmed, empty ones dropped. */
function readList(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw.map(String) : String(raw).split(',');
  return items.map((c) => c.trim()).filter((c) => c !== '');
}

/** A list of SageMaker endpoint names (`readList`'s forms); empty when absent. */
function readEndpointList(key: string, raw: unknown, problems: string[]): string[] {
  if (raw === undefined || raw === null) return [];
  const names = readList(raw);
  for (const name of names.filter((n) => !ENDPOINT_RE.test(n))) {
    problems.push(`${key}: invalid SageMaker endpoint name: ${JSON.stringify(name)}`);
  }
  return names;
}

/** `s3://bucket/key`, one exact object; undefined when absent. */
function readS3Object(key: string, raw: unknown, problems: string[]): S3Object | undefined {
  const given = optString(raw);
  if (given === undefined) return undefined;
  const m = S3_OBJECT_RE.exec(given);
  if (m === null || m[1].includes('..') || m[2].endsWith('/')) {
    problems.push(`${key}: expected s3://bucket/key naming one object (no *, ? or $ in the key), got ${given}`);
    return undefined;
  }
  return { bucket: m[1], key: m[2] };
}

/** A comma-separated list (`-c`) or a JSON array (cdk.json) of IPv4 CIDR blocks; undefined when absent. */
function readCidrs(key: string, raw: unknown, problems: string[]): string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  const cidrs = readList(raw);
  const bad = cidrs.filter((c) => {
    const m = CIDR_RE.exec(c);
    return m === null || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32;
  });
  if (bad.length > 0 || cidrs.length === 0) {
    problems.push(`${key}: expected IPv4 CIDR blocks such as 203.0.113.0/24, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return cidrs;
}

function optString(raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  const s = String(raw).trim();
  return s === '' ? undefined : s;
}

function readBool(key: string, raw: unknown, dflt: boolean, problems: string[]): boolean {
  if (raw === undefined || raw === null) return dflt;
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  problems.push(`${key}: expected true or false, got ${JSON.stringify(raw)}`);
  return dflt;
}

function readRatio(key: string, raw: unknown, dflt: number, problems: string[]): number {
  if (raw === undefined || raw === null) return dflt;
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (!Number.isFinite(n) || n < 0 || n > 1) {
    problems.push(`${key}: expected a number in [0, 1], got ${JSON.stringify(raw)}`);
    return dflt;
  }
  return n;
}

function readInt(
  key: string, raw: unknown, dflt: number, min: number, max: number, problems: string[],
): number {
  if (raw === undefined || raw === null) return dflt;
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${key}: expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
    return dflt;
  }
  return n;
}
