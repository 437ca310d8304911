/**
 * The gateway image's default keys source (../Dockerfile) holds no key, while the local stack and
 * docker compose keep serving the demo key from config/keys.yaml. The image itself cannot be built
 * here (no Docker engine); the gateway's acceptance of the empty file is proven against the real
 * binary in tests/e2e/cli.rs.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';

const REPO = path.join(__dirname, '..', '..');
const read = (file: string) => fs.readFileSync(path.join(REPO, file), 'utf8');

/** The instructions of the Dockerfile's last stage, continuation lines joined. */
function runtimeStage(): string[] {
  const lines = read('Dockerfile').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim());
  const from = lines.map((l, i) => (/^FROM /i.test(l) ? i : -1)).filter((i) => i >= 0).pop()!;
  return lines.slice(from).filter((l) => l !== '' && !l.startsWith('#'));
}

describe('image default keys', () => {
  test('config/keys.empty.yaml holds no plan and no key', () => {
    assert.deepEqual(parse(read('config/keys.empty.yaml')), { usage_plans: [], keys: [] });
  });

  test('the runtime image bakes the empty file in as /etc/sagegate/keys.yaml, and the demo file not at all', () => {
    const stage = runtimeStage();
    const copies = stage.filter((l) => /^COPY /i.test(l) && !l.includes('--from='));
    assert.ok(copies.includes('COPY config/keys.empty.yaml /etc/sagegate/keys.yaml'), copies.join('\n'));
    assert.ok(!copies.some((l) => /config\/keys\.yaml/.test(l)), copies.join('\n'));
    assert.ok(stage.some((l) => /^ENV .*SAGEGATE_KEYS=\/etc\/sagegate\/keys\.yaml/.test(l)), 'default keys source');
  });

  test('the image build checks the config against the file it bakes in', () => {
    assert.match(read('Dockerfile'), /check-config --config config\/gateway\.yaml --keys config\/keys\.empty\.yaml/);
  });

  test('docker compose and the local stack keep the demo key from config/keys.yaml', () => {
    const compose = parse(read('docker-compose.yml'));
    const gateway = compose.services.gateway;
    assert.ok(gateway.volumes.includes('./config:/etc/sagegate:ro'), gateway.volumes.join(','));
    assert.equal(gateway.environment.SAGEGATE_KEYS, '/etc/sagegate/keys.yaml');
    const demo = parse(read('config/keys.yaml'));
    assert.ok(demo.keys.some((k: any) => typeof k.value === 'string' && k.value.length >= 20), 'the demo key');
    assert.match(read('deploy/local-stack.sh'), /--keys config\/keys\.yaml/);
  });
});
