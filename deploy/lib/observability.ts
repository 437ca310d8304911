/**
 * Observability for the gateway task: an AWS Distro for OpenTelemetry (ADOT) collector sidecar.
 *
 * Input: the task definition, the gateway container, the task's log group and the settings.
 * Output: a second, non-essential container in the task that
 * - receives the gateway's OTLP/HTTP traces on 127.0.0.1:4318 and sends them to AWS X-Ray;
 * - scrapes the gateway's Prometheus listener on 127.0.0.1:9090 every 60 s and writes the metrics to
 *   CloudWatch as Embedded Metric Format (EMF) log events, turning a bounded set of them into
 *   CloudWatch metrics in the `Sagegate` namespace;
 * plus the task-role permissions the collector needs, and the environment that turns the gateway's
 * OTLP export on (`SAGEGATE_OTLP_ENABLED` and the standard `OTEL_*` variables).
 *
 * Invariants (tested in deploy/test/observability.test.ts):
 * - both receivers listen on 127.0.0.1 only: nothing outside the task can push spans or read metrics;
 * - the gateway depends on the collector having started, so ECS stops the gateway first and its final
 *   span flush still finds the collector;
 * - CloudWatch metrics are declared per metric with bounded dimensions (stage, route, status class,
 *   error type, cache result, breaker endpoint, fallback decision, or none): the per-key-id series
 *   (throttled, quota-refused) become one metric each summed over all keys (`dimensions: [[]]`),
 *   never one metric per key;
 * - `-c observability=false` removes the container, the permissions and the variables.
 */
import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { Settings } from './settings';

/** Name of the collector container. */
export const COLLECTOR_CONTAINER = 'otel-collector';
/** The collector's OTLP/HTTP receiver, on the task's loopback. */
export const OTLP_ENDPOINT = 'http://127.0.0.1:4318';
/** The gateway's admin listener (config/gateway.yaml `server.admin_listen`), scraped by the collector. */
export const METRICS_TARGET = '127.0.0.1:9090';
/** CloudWatch namespace of the gateway's metrics. */
export const METRICS_NAMESPACE = 'Sagegate';

/**
 * The environment that turns the gateway's OTLP export on, pointed at the sidecar.
 *
 * Sampling is decided here, never by the caller: a recorded trace costs money (X-Ray bills per
 * trace) and log volume, and a caller on the internet must control no cost (DESIGN.md, "Edge
 * rules"). So the sampler is plain `traceidratio` (the trace id decides, at `traceSampleRatio`), and
 * `SAGEGATE_OTLP_TRUST_CALLER_SAMPLING=false` says explicitly that a caller's `traceparent` flag or
 * `X-Amzn-Trace-Id` `Sampled=1` is ignored: with that setting, even a `parentbased_*` sampler would
 * no longer follow the caller, and this stack does not rely on the config file's default for it.
 */
export function gatewayOtelEnvironment(settings: Settings): Record<string, string> {
  return {
    SAGEGATE_OTLP_ENABLED: 'true',
    OTEL_EXPORTER_OTLP_ENDPOINT: OTLP_ENDPOINT,
    OTEL_TRACES_SAMPLER: 'traceidratio',
    OTEL_TRACES_SAMPLER_ARG: String(settings.traceSampleRatio),
    SAGEGATE_OTLP_TRUST_CALLER_SAMPLING: 'false',
    OTEL_RESOURCE_ATTRIBUTES: 'cloud.provider=aws,cloud.platform=aws_ecs',
  };
}

/** The collector's configuration (ADOT reads it from `AOT_CONFIG_CONTENT`). */
export function collectorConfig(region: string, metricsLogGroup: string): string {
  // Counters may arrive with or without `_total` (the Prometheus receiver's name normalisation
  // changed between collector releases), so selectors accept both.
  const metric = (name: string) => `"^sagegate_${name}$"`;
  return `extensions:
  health_check:
    endpoint: 127.0.0.1:13133
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
  prometheus:
    config:
      scrape_configs:
        - job_name: sagegate
          scrape_interval: 60s
          static_configs:
            - targets: ["${METRICS_TARGET}"]
processors:
  batch/traces:
    timeout: 1s
    send_batch_size: 50
  batch/metrics:
    timeout: 60s
  resourcedetection:
    detectors: [env, ecs]
    timeout: 2s
    override: false
exporters:
  awsxray:
    region: ${region}
    indexed_attributes: [http.route, sagegate.stage, sagegate.api_key_id, sagegate.cache, error.type]
  awsemf:
    region: ${region}
    namespace: ${METRICS_NAMESPACE}
    log_group_name: ${metricsLogGroup}
    log_stream_name: "{TaskId}"
    dimension_rollup_option: NoDimensionRollup
    metric_declarations:
      - dimensions: [[stage, route, status_class]]
        metric_name_selectors: [${metric('requests(_total)?')}, ${metric('request_duration_seconds')}]
      - dimensions: [[stage, route], [stage, route, variant]]
        metric_name_selectors: [${metric('integration_duration_seconds')}]
      - dimensions: [[error_type]]
        metric_name_selectors: [${metric('upstream_errors(_total)?')}]
      - dimensions: [[stage, result]]
        metric_name_selectors: [${metric('cache_lookups(_total)?')}]
      - dimensions: [[result]]
        metric_name_selectors: [${metric('key_reloads(_total)?')}, ${metric('config_reloads(_total)?')}, ${metric('otel_spans(_total)?')}]
      - dimensions: [[endpoint]]
        metric_name_selectors: [${metric('circuit_breaker_state')}, ${metric('circuit_breaker_short_circuited(_total)?')}]
      - dimensions: [[decision]]
        metric_name_selectors: [${metric('limit_store_fallback(_total)?')}]
      - dimensions: [[]]
        metric_name_selectors: [${metric('throttled(_total)?')}, ${metric('quota_rejected(_total)?')}, ${metric('limit_store_up')}, ${metric('limit_store_errors(_total)?')}, ${metric('memory_held_bytes')}, ${metric('memory_budget_bytes')}, ${metric('memory_slots_taken')}, ${metric('memory_slots')}, ${metric('memory_refusals(_total)?')}, ${metric('config_generation')}]
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resourcedetection, batch/traces]
      exporters: [awsxray]
    metrics:
      receivers: [prometheus]
      processors: [resourcedetection, batch/metrics]
      exporters: [awsemf]
`;
}

/**
 * Adds the collector sidecar to `taskDefinition`, its permissions to the task role, and the
 * gateway's dependency on it.
 */
export function addCollector(
  scope: Construct,
  taskDefinition: ecs.FargateTaskDefinition,
  gateway: ecs.ContainerDefinition,
  taskLogGroup: logs.ILogGroup,
  encryptionKey: kms.IKey,
  settings: Settings,
): ecs.ContainerDefinition {
  const stack = Stack.of(scope);
  // EMF events land here; CloudWatch extracts the declared metrics from them.
  const metricsLogGroup = new logs.LogGroup(scope, 'GatewayMetricsLogs', {
    retention: logs.RetentionDays.ONE_MONTH,
    encryptionKey,
    removalPolicy: RemovalPolicy.RETAIN,
  });
  const collector = taskDefinition.addContainer(COLLECTOR_CONTAINER, {
    image: ecs.ContainerImage.fromRegistry(settings.collectorImage),
    // Losing telemetry must never take serving capacity away.
    essential: false,
    cpu: 64,
    memoryReservationMiB: 128,
    readonlyRootFilesystem: true,
    environment: {
      AOT_CONFIG_CONTENT: collectorConfig(stack.region, metricsLogGroup.logGroupName),
    },
    healthCheck: {
      // The ADOT image ships this probe of the health_check extension.
      command: ['CMD', '/healthcheck'],
      interval: Duration.seconds(30),
      timeout: Duration.seconds(5),
      retries: 3,
      startPeriod: Duration.seconds(10),
    },
    logging: ecs.LogDrivers.awsLogs({
      streamPrefix: COLLECTOR_CONTAINER,
      logGroup: taskLogGroup,
      mode: ecs.AwsLogDriverMode.NON_BLOCKING,
      maxBufferSize: Size.mebibytes(25),
    }),
  });
  // ECS stops containers in reverse dependency order: the gateway drains and flushes its spans
  // while the collector still runs.
  gateway.addContainerDependencies({ container: collector, condition: ecs.ContainerDependencyCondition.START });

  // X-Ray's write actions have no resource-level permissions; the logs actions are scoped to the
  // metrics log group.
  taskDefinition.addToTaskRolePolicy(new iam.PolicyStatement({
    sid: 'CollectorWritesTraces',
    actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
    resources: ['*'],
  }));
  taskDefinition.addToTaskRolePolicy(new iam.PolicyStatement({
    sid: 'CollectorWritesMetrics',
    actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
    resources: [metricsLogGroup.logGroupArn],
  }));
  return collector;
}
