/**
 * gateway.yaml from S3 (`-c gatewayConfig=s3`, the default): the gateway reads
 * `SAGEGATE_CONFIG=s3://…` at start and polls it by ETag, so a canary share, a shadow, a stage
 * variable, a throttle or a template changes by an upload, without a new image or a deployment.
 *
 * Input: the seed file's name and text (`checkConfigSeed`); the stack, the bucket it keeps the keys
 * in, and the settings (`configObjectSource`).
 * Output: the object's `s3://` URL, the IAM statements the task role needs to read it, and whether
 * the stack must seed it.
 * Invariants: the task role may `s3:GetObject` exactly one object (the stack's `gateway.yaml` next
 * to `keys.yaml`, or the operator's `configObject`), and `kms:Decrypt` only with `configKmsKeyArn`,
 * only through S3, only for that object (or its bucket, whose S3 Bucket Key is the encryption
 * context then); a seed the template would carry is one YAML mapping, small enough for the seeding
 * function's event, and holds no password in clear text.
 */
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { LineCounter, isMap, isScalar, parseAllDocuments, visit } from 'yaml';
import { Settings } from './settings';

/** Object key of gateway.yaml in the stack's keys bucket. */
export const CONFIG_OBJECT_KEY = 'gateway.yaml';

/**
 * The largest seed: its text goes into the template and into the event CloudFormation sends the
 * seeding function, which it invokes asynchronously (256 KB per event, the whole request included).
 * The shipped file is under 8 KiB; a larger one is uploaded by hand and named with `configObject`.
 */
export const MAX_SEED_BYTES = 128 * 1024;

/** Where the gateway reads gateway.yaml, and what the task role needs for it. */
export interface ConfigObjectSource {
  /** `SAGEGATE_CONFIG`. */
  readonly url: string;
  /** Statements for the task role: read the object, and decrypt it when it is SSE-KMS. */
  readonly statements: iam.PolicyStatement[];
  /** Whether the stack writes the object (once, at creation); false for an operator's `configObject`. */
  readonly seed: boolean;
}

/** The config object: the stack's `gateway.yaml` in `bucket`, or the operator's `configObject`. */
export function configObjectSource(stack: Stack, bucket: s3.IBucket, settings: Settings): ConfigObjectSource {
  const given = settings.configObject;
  if (given === undefined) {
    return {
      url: `s3://${bucket.bucketName}/${CONFIG_OBJECT_KEY}`,
      statements: [readObject(bucket.arnForObjects(CONFIG_OBJECT_KEY))],
      seed: true,
    };
  }
  const bucketArn = `arn:${stack.partition}:s3:::${given.bucket}`;
  const objectArn = `${bucketArn}/${given.key}`;
  const statements = [readObject(objectArn)];
  if (settings.configKmsKeyArn !== undefined) {
    // The key is in the bucket's region (SSE-KMS requires it), so S3 calls KMS from there.
    const region = settings.configKmsKeyArn.split(':')[3];
    statements.push(new iam.PolicyStatement({
      sid: 'DecryptConfigObject',
      actions: ['kms:Decrypt'],
      resources: [settings.configKmsKeyArn],
      conditions: {
        StringEquals: {
          'kms:ViaService': `s3.${region}.${stack.urlSuffix}`,
          // S3's encryption context: the object's ARN, or the bucket's with an S3 Bucket Key.
          'kms:EncryptionContext:aws:s3:arn': [objectArn, bucketArn],
        },
      },
    }));
  }
  return { url: `s3://${given.bucket}/${given.key}`, statements, seed: false };
}

function readObject(arn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: 'ReadConfigObject', actions: ['s3:GetObject'], resources: [arn] });
}

/**
 * Throws unless `text` can seed the config object: one YAML document whose top level is a
 * mapping, at most `MAX_SEED_BYTES`, and no `password:` given in clear text (the template is
 * readable by anyone who may read the stack; the shipped file reads it with `${env:…}`, which the
 * stack fills from Secrets Manager). Everything else is the gateway's to check:
 * `sagegate check-config --config FILE` before the deploy, and every reload after.
 */
export function checkConfigSeed(file: string, text: string): void {
  const problems: string[] = [];
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_SEED_BYTES) {
    problems.push(`${file}: ${bytes} bytes, more than the ${MAX_SEED_BYTES} a seed may have (upload it yourself and `
      + 'name it with -c configObject=s3://…)');
  }
  const lineCounter = new LineCounter();
  const docs = [...parseAllDocuments(text, { lineCounter })];
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  if (docs.length === 0 || !isMap(docs[0].contents)) {
    problems.push(`${file}: not a YAML mapping (expected server:, stages:, routes: …)`);
  }
  if (docs.length > 1) {
    problems.push(`${at(docs[1].range[0])}: a second YAML document; gateway.yaml is one document`);
  }
  for (const doc of docs) {
    for (const e of doc.errors) problems.push(`${at(e.pos[0])}: not valid YAML: ${e.message.split('\n')[0]}`);
    visit(doc, {
      Pair(_, pair) {
        if (!isScalar(pair.key) || pair.key.value !== 'password' || !isScalar(pair.value)) return;
        const value = String(pair.value.value ?? '');
        if (value !== '' && !value.startsWith('${env:')) {
          problems.push(`${at(pair.key.range?.[0] ?? 0)}: a password in clear text; read it with \${env:NAME}`);
        }
      },
    });
  }
  if (problems.length > 0) {
    throw new Error(
      `initialConfigFile: refused, because its text goes into the CloudFormation template:\n  ${problems.join('\n  ')}`);
  }
}
