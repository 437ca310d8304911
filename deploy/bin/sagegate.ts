#!/usr/bin/env node
/**
 * CDK app entry: one stack, `Sagegate` (override with `-c stackName=...`), configured entirely by
 * the CDK context (cdk.json plus `-c key=value`; see deploy/README.md). Environment-agnostic unless
 * CDK_DEFAULT_ACCOUNT/CDK_DEFAULT_REGION are set by the CLI's credentials, so it synthesizes offline.
 */
import { App } from 'aws-cdk-lib';
import { SagegateStack } from '../lib/sagegate-stack';

const app = new App();
const stackName = String(app.node.tryGetContext('stackName') ?? 'Sagegate');
new SagegateStack(app, stackName, {
  description: 'sagegate: API gateway for SageMaker on ECS Fargate behind an ALB',
});
app.synth();
