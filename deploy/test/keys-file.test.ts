/**
 * The `initialKeysFile` guard (deploy/lib/keys-file.ts): a key in clear text is refused in every
 * YAML form it can take, with the line and column where it is; hashed files pass unchanged.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkHashedOnly } from '../lib/keys-file';
import { thrownMessage } from './helpers';

const HASH = 'ab'.repeat(32);
const PLAN = 'usage_plans:\n  - id: standard\n    stages: [temp, prod]\n    throttle: { rate_limit: 10, burst_limit: 20 }\n';

/** The guard's message for `text`, or '' when it passes. */
const refusal = (text: string) => thrownMessage(() => checkHashedOnly('k.yaml', text));

describe('initialKeysFile guard', () => {
  test('hashed keys pass, in block and in flow style', () => {
    assert.equal(refusal(`${PLAN}keys:\n  - id: a\n    usage_plans: [standard]\n    value_sha256: "${HASH}"\n`), '');
    assert.equal(refusal(`${PLAN}keys: [{id: a, usage_plans: [standard], value_sha256: "${HASH}"}]\n`), '');
    assert.equal(refusal('usage_plans: []\nkeys: []\n'), '');
  });

  test('the repository empty keys file passes (the image and the stack seed the same one)', () => {
    const file = path.join(__dirname, '..', '..', 'config', 'keys.empty.yaml');
    assert.equal(refusal(fs.readFileSync(file, 'utf8')), '');
  });

  const clear: [string, string, string][] = [
    ['block style', `${PLAN}keys:\n  - id: a\n    value: "a-key-in-clear-text-123"\n`, 'k.yaml:7:5'],
    ['flow style, the form a line pattern missed', `${PLAN}keys: [{id: a, usage_plans: [standard], value: "a-key-in-clear-text-123"}]\n`, 'k.yaml:5:41'],
    ['flow mapping in a block list', `${PLAN}keys:\n  - {id: a, value: a-key-in-clear-text-123}\n`, 'k.yaml:6:13'],
    ['quoted key', `${PLAN}keys:\n  - id: a\n    "value": a-key-in-clear-text-123\n`, 'k.yaml:7:5'],
    ['single-quoted key after other fields', `${PLAN}keys:\n  - {id: a, enabled: true, 'value': x}\n`, 'k.yaml:6:28'],
    ['explicit key', `${PLAN}keys:\n  - id: a\n    ? value\n    : a-key-in-clear-text-123\n`, 'k.yaml:7:7'],
    ['inside an anchor that an alias reuses', `defaults: &d {value: a-key-in-clear-text-123}\nkeys:\n  - *d\n`, 'k.yaml:1:15'],
    ['whole file as one JSON line', `{"usage_plans": [], "keys": [{"id": "a", "value": "a-key-in-clear-text-123"}]}`, 'k.yaml:1:42'],
  ];
  for (const [name, text, where] of clear) {
    test(`a key in clear text is refused: ${name}`, () => {
      const message = refusal(text);
      assert.match(message, /plain `value:`/, name);
      assert.ok(message.includes(`${where}: plain`), `expected ${where} in:\n${message}`);
    });
  }

  test('every clear-text key is listed at once', () => {
    const message = refusal(`${PLAN}keys:\n  - {id: a, value: aaaaaaaaaaaaaaaaaaaaaaaa}\n  - {id: b, value: bbbbbbbbbbbbbbbbbbbbbbbb}\n`);
    assert.equal(message.match(/plain `value:`/g)?.length, 2, message);
  });

  test('a second document is refused: the gateway reads only the first, but the template gets all', () => {
    assert.match(refusal(`${PLAN}keys: []\n---\nkeys: [{id: b, value_sha256: "${HASH}"}]\n`), /k\.yaml:6:1: a second YAML document/);
  });

  test('a file that does not parse, or holds nothing, is refused', () => {
    assert.match(refusal('keys: [{id: a, value_sha256: "x"\n'), /not valid YAML/);
    assert.match(refusal('keys:\n  - id: a\n  id: b\n\tvalue: x\n'), /not valid YAML/);
    assert.match(refusal('# nothing yet\n'), /holds no YAML document/);
  });

  test('the word value elsewhere (a comment, a value, a key name containing it) is not a key in clear text', () => {
    assert.equal(refusal(`# value: not a key\n${PLAN}keys:\n  - id: value\n    name: "value: x"\n    value_sha256: "${HASH}"\n`), '');
  });
});
