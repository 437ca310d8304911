/**
 * The optional WAF web ACL (deploy/lib/waf.ts): absent by default; with `-c waf=true`, on the ALB
 * with a per-address rate limit first, then AWS's common and known-bad-inputs rule sets.
 */
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { COUNT_ONLY_RULES, WAF_WINDOW_SECS } from '../lib/waf';
import { Synthesized, render, resources, single, synth } from './helpers';

describe('WAF', () => {
  test('absent by default', () => {
    const plain = synth();
    assert.equal(resources(plain.json, 'AWS::WAFv2::WebACL').length, 0);
    assert.equal(resources(plain.json, 'AWS::WAFv2::WebACLAssociation').length, 0);
  });

  let waf: Synthesized;
  before(() => {
    waf = synth({ waf: 'true' });
  });

  test('a regional web ACL, allowing by default, associated with the ALB', () => {
    const [aclId, acl] = single(waf.json, 'AWS::WAFv2::WebACL');
    assert.equal(acl.Scope, 'REGIONAL');
    assert.deepEqual(acl.DefaultAction, { Allow: {} });
    const [, assoc] = single(waf.json, 'AWS::WAFv2::WebACLAssociation');
    const [albId] = single(waf.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    assert.equal(render(assoc.ResourceArn), `\${${albId}}`);
    assert.equal(render(assoc.WebACLArn), `\${${aclId}.Arn}`);
  });

  test('rules in order: rate limit per address, common rule set, known bad inputs', () => {
    const [, acl] = single(waf.json, 'AWS::WAFv2::WebACL');
    const rules = [...acl.Rules].sort((a: any, b: any) => a.Priority - b.Priority);
    assert.deepEqual(rules.map((r: any) => r.Name), [
      'RateLimitPerIp', 'AWSManagedRulesCommonRuleSet', 'AWSManagedRulesKnownBadInputsRuleSet',
    ]);
    for (const r of rules) assert.equal(r.VisibilityConfig.CloudWatchMetricsEnabled, true, r.Name);
  });

  test('the rate rule: client IP, 5-minute window, the configured limit, API Gateway throttling body with 429', () => {
    const [, acl] = single(waf.json, 'AWS::WAFv2::WebACL');
    const rate = acl.Rules.find((r: any) => r.Name === 'RateLimitPerIp');
    assert.deepEqual(rate.Statement.RateBasedStatement, {
      AggregateKeyType: 'IP', EvaluationWindowSec: WAF_WINDOW_SECS, Limit: 6000,
    });
    const response = rate.Action.Block.CustomResponse;
    assert.equal(response.ResponseCode, 429);
    assert.deepEqual(acl.CustomResponseBodies[response.CustomResponseBodyKey], {
      ContentType: 'APPLICATION_JSON', Content: '{"message":"Too Many Requests"}',
    });
    const [, other] = single(synth({ waf: 'true', wafRateLimit: '1200' }).json, 'AWS::WAFv2::WebACL');
    assert.equal(other.Rules.find((r: any) => r.Name === 'RateLimitPerIp').Statement.RateBasedStatement.Limit, 1200);
    assert.throws(() => synth({ waf: 'true', wafRateLimit: '9' }), /wafRateLimit/);
  });

  test('the managed groups block, except the body-size and missing User-Agent rules, which only count', () => {
    const [, acl] = single(waf.json, 'AWS::WAFv2::WebACL');
    const managed = acl.Rules.filter((r: any) => r.Statement.ManagedRuleGroupStatement);
    for (const r of managed) {
      assert.deepEqual(r.OverrideAction, { None: {} }, `${r.Name} must block, not only count`);
      assert.equal(r.Statement.ManagedRuleGroupStatement.VendorName, 'AWS');
    }
    const common = managed.find((r: any) => r.Name === 'AWSManagedRulesCommonRuleSet');
    const overrides = common.Statement.ManagedRuleGroupStatement.RuleActionOverrides;
    assert.deepEqual(overrides.map((o: any) => o.Name).sort(), [...COUNT_ONLY_RULES].sort());
    for (const o of overrides) assert.deepEqual(o.ActionToUse, { Count: {} });
    assert.deepEqual(COUNT_ONLY_RULES.sort(), ['NoUserAgent_HEADER', 'SizeRestrictions_BODY']);
  });
});
