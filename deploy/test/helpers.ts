/**
 * Test fixtures: synthesize the stack the way `cdk synth` does (cdk.json's context, then `-c`
 * overrides, which arrive as strings), and read the template back in plain terms.
 *
 * `render` turns CloudFormation intrinsics into readable strings (`{Ref: AWS::Region}` → `${AWS::Region}`,
 * `{Ref: KeysBucketC65599E5}` → `${KeysBucketC65599E5}`, `Fn::GetAtt [X, Arn]` → `${X.Arn}`), so an
 * assertion can compare a whole ARN or URI instead of a nested Fn::Join.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { SagegateStack } from '../lib/sagegate-stack';

const CDK_JSON = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));

/** The certificate every synth gets unless the test says otherwise (`certificateArn: ''` removes it). */
export const CERT = 'arn:aws:acm:eu-west-1:123456789012:certificate/0b7a4c1e-1234-4a5b-9c8d-0123456789ab';

export interface Synthesized {
  readonly template: Template;
  /** Warnings the stack attached to itself (`Annotations.addWarning`). */
  readonly warnings: string[];
  readonly json: CfnTemplate;
  /** The stack's asset manifest (`<stack>.assets.json`): what `cdk deploy` would build and publish. */
  readonly assets: AssetManifest;
}

export interface CfnTemplate {
  Resources: Record<string, { Type: string; Properties?: any; DependsOn?: string[]; Metadata?: any }>;
  Outputs?: Record<string, { Value: unknown }>;
}

interface AssetManifest {
  dockerImages?: Record<string, { source: { directory: string; dockerFile?: string; platform?: string } }>;
}

/**
 * Synthesizes the stack with cdk.json's context, a certificate (the deployable default: without
 * one, an internet-facing stack is refused), then `overrides` (strings, as `-c` gives them).
 */
export function synth(overrides: Record<string, string> = {}): Synthesized {
  // The built-in CloudFormation schema validation only warns and costs seconds per process;
  // cfn-lint checks the synthesized templates in .ci/deploy-check.sh instead.
  // No copy of the Docker build context per synth (the asset manifest still names the Dockerfile
  // and platform); .ci/deploy-check.sh checks the staged context of a real `cdk synth`.
  const staging = { 'aws:cdk:disable-asset-staging': true };
  const context = { ...CDK_JSON.context, ...staging, certificateArn: CERT, ...overrides };
  const app = new App({ context, builtinCloudFormationValidation: false });
  const stack = new SagegateStack(app, 'Test');
  const template = Template.fromStack(stack);
  const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((m) => String(m.entry.data));
  const assembly = app.synth();
  const manifestFile = path.join(assembly.directory, 'Test.assets.json');
  const assets = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as AssetManifest;
  return { template, warnings, json: template.toJSON() as CfnTemplate, assets };
}

/** The message `f` throws, or '' when it returns. */
export function thrownMessage(f: () => unknown): string {
  try {
    f();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

/** CloudFormation value → string; intrinsics become `${...}` placeholders. */
export function render(value: unknown): string {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, any>;
    if ('Ref' in o) return `\${${o.Ref}}`;
    if ('Fn::GetAtt' in o) return `\${${o['Fn::GetAtt'].join('.')}}`;
    if ('Fn::Sub' in o && typeof o['Fn::Sub'] === 'string') return o['Fn::Sub'];
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'];
      return (parts as unknown[]).map(render).join(sep);
    }
  }
  return JSON.stringify(value);
}

/** Resources of one type, as [logicalId, properties] pairs. */
export function resources(json: CfnTemplate, type: string): [string, any][] {
  return Object.entries(json.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

/** The only resource of a type; fails when there are none or several. */
export function single(json: CfnTemplate, type: string): [string, any] {
  const found = resources(json, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0];
}

/** The gateway container definition. */
export function gatewayContainer(json: CfnTemplate): any {
  const [, task] = single(json, 'AWS::ECS::TaskDefinition');
  const container = task.ContainerDefinitions.find((c: any) => c.Name === 'gateway');
  if (!container) throw new Error('no container named gateway');
  return container;
}

/** The gateway container's ECS secrets: variable name → rendered `ValueFrom`. */
export function gatewaySecrets(json: CfnTemplate): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const { Name, ValueFrom } of gatewayContainer(json).Secrets ?? []) secrets[Name] = render(ValueFrom);
  return secrets;
}

/** The gateway container's environment as a plain map of rendered values. */
export function gatewayEnv(json: CfnTemplate): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { Name, Value } of gatewayContainer(json).Environment) env[Name] = render(Value);
  return env;
}

export interface Statement {
  actions: string[];
  resources: string[];
  effect: string;
}

/** Every IAM statement attached to the role with this logical id (inline and attached policies). */
export function roleStatements(json: CfnTemplate, roleId: string): Statement[] {
  const docs: any[] = [];
  const role = json.Resources[roleId];
  for (const p of role?.Properties?.Policies ?? []) docs.push(p.PolicyDocument);
  for (const [, policy] of resources(json, 'AWS::IAM::Policy')) {
    if ((policy.Roles ?? []).some((r: any) => r.Ref === roleId)) docs.push(policy.PolicyDocument);
  }
  return docs.flatMap((d) => d.Statement).map(normalize);
}

/** Every IAM statement in the template, with its policy's logical id. */
export function allStatements(json: CfnTemplate): (Statement & { policy: string })[] {
  const out: (Statement & { policy: string })[] = [];
  for (const [id, r] of Object.entries(json.Resources)) {
    const docs: any[] = [];
    if (r.Type === 'AWS::IAM::Policy') docs.push(r.Properties.PolicyDocument);
    if (r.Type === 'AWS::IAM::Role') for (const p of r.Properties?.Policies ?? []) docs.push(p.PolicyDocument);
    for (const d of docs) for (const s of d.Statement) out.push({ ...normalize(s), policy: id });
  }
  return out;
}

function normalize(s: any): Statement {
  const list = (v: unknown) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  return { actions: list(s.Action).map(String), resources: list(s.Resource).map(render), effect: s.Effect };
}

/** Logical id of the role the gateway task runs as. */
export function taskRoleId(json: CfnTemplate): string {
  const [, task] = single(json, 'AWS::ECS::TaskDefinition');
  return task.TaskRoleArn['Fn::GetAtt'][0];
}

/** Placeholder form of an ARN in this environment-agnostic stack. */
export function endpointArn(name: string): string {
  return `arn:\${AWS::Partition}:sagemaker:\${AWS::Region}:\${AWS::AccountId}:endpoint/${name}`;
}
