/**
 * The shared limit store (deploy/lib/shared-limits.ts): on by default when there can be more than
 * one task; an encrypted, authenticated Valkey reachable from the gateway tasks only; the gateway
 * wired to it through the variables the shipped config/gateway.yaml reads.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LIMIT_STORE_PORT, VALKEY_VERSION } from '../lib/shared-limits';
import {
  CfnTemplate, Synthesized, gatewayEnv, gatewaySecrets, render, resources, roleStatements, single, synth,
} from './helpers';

const REPO = path.join(__dirname, '..', '..');

let on: Synthesized;
before(() => {
  on = synth();
});

/** The logical id of the one resource of `type` whose id starts with `prefix`. */
function idOf(json: CfnTemplate, type: string, prefix: string): string {
  const found = resources(json, type).filter(([id]) => id.startsWith(prefix));
  assert.equal(found.length, 1, `${type} ${prefix}*: ${found.map(([id]) => id).join(', ')}`);
  return found[0][0];
}

describe('shared limits on (the default with maxTasks 10)', () => {
  test('a two-node Valkey replication group with automatic failover across AZs, in the private subnets', () => {
    const [, store] = single(on.json, 'AWS::ElastiCache::ReplicationGroup');
    assert.equal(store.Engine, 'valkey');
    assert.equal(store.EngineVersion, VALKEY_VERSION);
    assert.equal(store.CacheNodeType, 'cache.t4g.micro');
    assert.equal(store.NumCacheClusters, 2);
    assert.equal(store.AutomaticFailoverEnabled, true);
    assert.equal(store.MultiAZEnabled, true);
    assert.equal(store.Port, LIMIT_STORE_PORT);
    const [, subnets] = single(on.json, 'AWS::ElastiCache::SubnetGroup');
    assert.equal(render(store.CacheSubnetGroupName), `\${${idOf(on.json, 'AWS::ElastiCache::SubnetGroup', 'LimitStoreSubnets')}}`);
    const ids = subnets.SubnetIds.map(render);
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id, /^\$\{VpcPrivateSubnet\d/);
    assert.equal(gatewayEnv(synth({ cacheNodeType: 'cache.r7g.large' }).json).SAGEGATE_LIMITS_STORE, 'redis');
  });

  test('the same Valkey release line as the local stack runs (docker-compose.yml)', () => {
    const compose = fs.readFileSync(path.join(REPO, 'docker-compose.yml'), 'utf8');
    const image = /image:\s*valkey\/valkey:(\d+\.\d+)/.exec(compose);
    assert.ok(image, 'no valkey image in docker-compose.yml');
    assert.equal(image[1], VALKEY_VERSION);
  });

  test('TLS required in transit, encrypted at rest with the stack key, auth token resolved from Secrets Manager', () => {
    const [, store] = single(on.json, 'AWS::ElastiCache::ReplicationGroup');
    assert.equal(store.TransitEncryptionEnabled, true);
    assert.equal(store.TransitEncryptionMode, 'required');
    assert.equal(store.AtRestEncryptionEnabled, true);
    assert.match(render(store.KmsKeyId), /^\$\{DataKey\w+\.Arn\}$/);
    const secret = idOf(on.json, 'AWS::SecretsManager::Secret', 'LimitStoreAuthToken');
    // A dynamic reference: the template holds where the token is, never the token.
    assert.equal(render(store.AuthToken), `{{resolve:secretsmanager:\${${secret}}:SecretString:::}}`);
    const props = on.json.Resources[secret].Properties;
    assert.match(render(props.KmsKeyId), /^\$\{DataKey\w+\.Arn\}$/);
    assert.equal(props.GenerateSecretString.ExcludePunctuation, true);
    assert.ok(props.GenerateSecretString.PasswordLength >= 32);
  });

  test('the gateway is wired to it: store redis, rediss:// primary endpoint on 6379, failure policy explicit', () => {
    const env = gatewayEnv(on.json);
    assert.equal(env.SAGEGATE_LIMITS_STORE, 'redis');
    assert.equal(env.SAGEGATE_REDIS_URL, `rediss://\${LimitStore.PrimaryEndPoint.Address}:${LIMIT_STORE_PORT}`);
    assert.equal(env.SAGEGATE_LIMITS_ON_STORE_FAILURE, 'local');
    assert.equal(gatewayEnv(synth({ limitsOnStoreFailure: 'deny' }).json).SAGEGATE_LIMITS_ON_STORE_FAILURE, 'deny');
  });

  test('the auth token reaches the task as an ECS secret only, readable by the execution role alone', () => {
    const secret = idOf(on.json, 'AWS::SecretsManager::Secret', 'LimitStoreAuthToken');
    assert.deepEqual(gatewaySecrets(on.json), { SAGEGATE_REDIS_PASSWORD: `\${${secret}}` });
    assert.equal(gatewayEnv(on.json).SAGEGATE_REDIS_PASSWORD, undefined);
    const [, task] = single(on.json, 'AWS::ECS::TaskDefinition');
    const readers = resources(on.json, 'AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.PolicyDocument).includes(secret))
      .flatMap(([, p]) => p.Roles.map(render));
    assert.deepEqual(readers, [`\${${task.ExecutionRoleArn['Fn::GetAtt'][0]}}`]);
    const get = roleStatements(on.json, task.ExecutionRoleArn['Fn::GetAtt'][0])
      .filter((s) => s.actions.includes('secretsmanager:GetSecretValue'));
    assert.deepEqual(get.flatMap((s) => s.resources), [`\${${secret}}`]);
  });

  test('6379 is open to the gateway service security group and nothing else; the cache has no egress', () => {
    const sg = idOf(on.json, 'AWS::EC2::SecurityGroup', 'LimitStoreSecurityGroup');
    const [, store] = single(on.json, 'AWS::ElastiCache::ReplicationGroup');
    assert.deepEqual(store.SecurityGroupIds.map(render), [`\${${sg}.GroupId}`]);
    const props = on.json.Resources[sg].Properties;
    assert.equal(props.SecurityGroupIngress, undefined);
    // CDK's marker for "no egress": one ICMP rule to 255.255.255.255/32 that matches nothing.
    assert.deepEqual(props.SecurityGroupEgress.map((e: any) => e.CidrIp), ['255.255.255.255/32']);
    const ingress = resources(on.json, 'AWS::EC2::SecurityGroupIngress')
      .filter(([, r]) => render(r.GroupId) === `\${${sg}.GroupId}`)
      .map(([, r]) => r);
    const [, service] = single(on.json, 'AWS::ECS::Service');
    const serviceSg = render(service.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups[0]);
    assert.deepEqual(
      ingress.map((r) => [r.IpProtocol, r.FromPort, r.ToPort, render(r.SourceSecurityGroupId), r.CidrIp]),
      [['tcp', LIMIT_STORE_PORT, LIMIT_STORE_PORT, serviceSg, undefined]],
    );
  });

  test('every variable the stack sets is one the gateway reads (config/gateway.yaml or a CLI flag)', () => {
    const config = fs.readFileSync(path.join(REPO, 'config', 'gateway.yaml'), 'utf8');
    const main = fs.readFileSync(path.join(REPO, 'src', 'main.rs'), 'utf8');
    const names = [...Object.keys(gatewayEnv(on.json)), ...Object.keys(gatewaySecrets(on.json))]
      .filter((n) => n.startsWith('SAGEGATE_'));
    assert.ok(names.includes('SAGEGATE_REDIS_PASSWORD'));
    for (const name of names) {
      assert.ok(
        config.includes(`\${env:${name}`) || main.includes(`env = "${name}"`),
        `${name} is set by the stack but read neither by config/gateway.yaml nor by src/main.rs`,
      );
    }
  });
});

describe('shared limits off', () => {
  test('sharedLimits=false: no cache, no secret, the memory store, and a synth warning naming the error', () => {
    const off = synth({ sharedLimits: 'false' });
    for (const type of ['AWS::ElastiCache::ReplicationGroup', 'AWS::ElastiCache::SubnetGroup', 'AWS::SecretsManager::Secret']) {
      assert.equal(resources(off.json, type).length, 0, type);
    }
    const env = gatewayEnv(off.json);
    for (const name of ['SAGEGATE_LIMITS_STORE', 'SAGEGATE_REDIS_URL', 'SAGEGATE_LIMITS_ON_STORE_FAILURE']) {
      assert.equal(env[name], undefined, name);
    }
    assert.deepEqual(gatewaySecrets(off.json), {});
    assert.ok(off.warnings.some((w) => w.includes('up to 10 times its throttle and quota')), off.warnings.join('\n'));
  });

  test('one task at most: off by default, and no warning', () => {
    const one = synth({ minTasks: '1', maxTasks: '1' });
    assert.equal(resources(one.json, 'AWS::ElastiCache::ReplicationGroup').length, 0);
    assert.deepEqual(one.warnings, []);
  });
});
