/**
 * The optional AWS WAF web ACL in front of the ALB (`-c waf=true`); the reasons for each rule are in
 * deploy/README.md, "WAF".
 *
 * Input: the ALB and the settings. Output: a regional web ACL associated with the ALB, with three
 * rules in this order:
 * 1. `RateLimitPerIp`: a client address above `wafRateLimit` requests in 5 minutes is refused with
 *    429 `{"message":"Too Many Requests"}` until it slows down. It runs first, so a flood is counted
 *    whatever else it would match, and is refused before anything reaches a task.
 * 2. `AWSManagedRulesCommonRuleSet` (AWS's core rule set: bad bots, SSRF to instance metadata,
 *    LFI/RFI, XSS, oversized query strings and paths), refusing with WAF's own 403, except two of its
 *    rules that only count: `SizeRestrictions_BODY` (bodies over 8 KB; the gateway has its own 10 MB
 *    limit, and model inputs are often larger) and `NoUserAgent_HEADER` (API Gateway never required
 *    a User-Agent, and clients built on hyper, reqwest or libcurl send none unless told to).
 * 3. `AWSManagedRulesKnownBadInputsRuleSet`: Log4Shell-style JNDI lookups and other request patterns
 *    known to exploit servers. The gateway is Rust, but request bodies reach the model container,
 *    and SageMaker serving stacks include Java ones (DJL Serving).
 *
 * The rate rule answers with API Gateway's own throttling body (DESIGN.md §1), so a client backs off
 * as it does on a plan's throttle. WAF prefixes any custom response header with `x-amzn-waf-`, so
 * `x-amzn-ErrorType` and `Retry-After` cannot be reproduced. A managed rule group's blocks keep WAF's
 * default response: a custom one would have to name each of the group's rules, and a rule AWS adds
 * later would not have it.
 */
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { Settings } from './settings';

/** WAF's rate-based rules count over a sliding window of this many seconds. */
export const WAF_WINDOW_SECS = 300;
/** Rules of the common rule set that count instead of block (see the module comment). */
export const COUNT_ONLY_RULES = ['SizeRestrictions_BODY', 'NoUserAgent_HEADER'];

const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({
  cloudWatchMetricsEnabled: true,
  metricName,
  sampledRequestsEnabled: true,
});

/** Creates the web ACL and associates it with `alb`. */
export function addWebAcl(scope: Construct, alb: elbv2.IApplicationLoadBalancer, settings: Settings): wafv2.CfnWebACL {
  const acl = new wafv2.CfnWebACL(scope, 'WebAcl', {
    scope: 'REGIONAL',
    description: 'sagegate: per-address rate limit, AWS common and known-bad-inputs rule sets in front of the ALB',
    defaultAction: { allow: {} },
    visibilityConfig: visibility('sagegate-web-acl'),
    customResponseBodies: {
      TooManyRequests: { contentType: 'APPLICATION_JSON', content: '{"message":"Too Many Requests"}' },
    },
    rules: [
      {
        name: 'RateLimitPerIp',
        priority: 0,
        action: { block: { customResponse: { responseCode: 429, customResponseBodyKey: 'TooManyRequests' } } },
        statement: {
          rateBasedStatement: {
            limit: settings.wafRateLimit,
            evaluationWindowSec: WAF_WINDOW_SECS,
            // The ALB is the edge: the address WAF sees is the client's. Behind CloudFront or
            // another proxy this would have to be FORWARDED_IP.
            aggregateKeyType: 'IP',
          },
        },
        visibilityConfig: visibility('sagegate-rate-limit-per-ip'),
      },
      {
        name: 'AWSManagedRulesCommonRuleSet',
        priority: 1,
        overrideAction: { none: {} },
        statement: {
          managedRuleGroupStatement: {
            vendorName: 'AWS',
            name: 'AWSManagedRulesCommonRuleSet',
            ruleActionOverrides: COUNT_ONLY_RULES.map((name) => ({ name, actionToUse: { count: {} } })),
          },
        },
        visibilityConfig: visibility('sagegate-common-rule-set'),
      },
      {
        name: 'AWSManagedRulesKnownBadInputsRuleSet',
        priority: 2,
        overrideAction: { none: {} },
        statement: { managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesKnownBadInputsRuleSet' } },
        visibilityConfig: visibility('sagegate-known-bad-inputs'),
      },
    ],
  });
  new wafv2.CfnWebACLAssociation(scope, 'WebAclAssociation', {
    resourceArn: alb.loadBalancerArn,
    webAclArn: acl.attrArn,
  });
  return acl;
}
