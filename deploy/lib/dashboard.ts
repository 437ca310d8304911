/**
 * The CloudWatch dashboard of the gateway: ../dashboards/cloudwatch.json (a dashboard body, the
 * format of `aws cloudwatch put-dashboard` and of the console's "View/edit source"), with each
 * widget's region set to the stack's.
 *
 * Input: the stack. Output: an `AWS::CloudWatch::Dashboard` and a `DashboardUrl` output.
 * Invariants (deploy/test/dashboard.test.ts; tests/e2e/dashboards.rs on the Rust side):
 * - every metric a widget searches for is one the ADOT collector turns into a CloudWatch metric, with
 *   exactly the dimensions the collector declares for it (deploy/lib/observability.ts), so no panel
 *   stays empty because of a dimension the collector dropped;
 * - every metric name is one the gateway's `/metrics` serves (a renamed metric fails the e2e test);
 * - counters are searched under both spellings (`x_total` and `x`), since the collector's Prometheus
 *   name normalisation differs between releases.
 * Only created with `observability` on: without the collector no gateway metric reaches CloudWatch.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CfnOutput, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';

/** The dashboard body, as committed. */
export const CLOUDWATCH_DASHBOARD_FILE = path.join(__dirname, '..', 'dashboards', 'cloudwatch.json');
/** The placeholder each widget's `region` holds in the file. */
const REGION_PLACEHOLDER = 'REGION';

/** The dashboard body from the file, each widget's region set to `region`. */
export function dashboardBody(region: string): any {
  const body = JSON.parse(fs.readFileSync(CLOUDWATCH_DASHBOARD_FILE, 'utf8'));
  for (const widget of body.widgets) {
    if (widget.properties?.region === REGION_PLACEHOLDER) widget.properties.region = region;
  }
  return body;
}

/** Adds the dashboard to `scope`'s stack. */
export function addDashboard(scope: Construct): cloudwatch.CfnDashboard {
  const stack = Stack.of(scope);
  const dashboard = new cloudwatch.CfnDashboard(scope, 'GatewayDashboard', {
    dashboardName: `${stack.stackName}-${stack.region}`,
    dashboardBody: stack.toJsonString(dashboardBody(stack.region)),
  });
  new CfnOutput(scope, 'DashboardUrl', {
    description: 'The gateway\'s CloudWatch dashboard',
    value: `https://${stack.region}.console.aws.amazon.com/cloudwatch/home?region=${stack.region}#dashboards:name=${dashboard.ref}`,
  });
  return dashboard;
}
