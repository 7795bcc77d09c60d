# Web application firewall in front of the ALB. By default the stack creates its own web ACL;
# set waf_web_acl_arn to attach an existing one instead (e.g. from Firewall Manager).
#
# Tuned for this API: TradingView delivers every user's alerts from four addresses on AWS, so
# the per-address rate limit leaves the webhook path out (the engine limits each webhook
# token itself) and hosting-provider addresses are only counted, not blocked.

locals {
  create_waf           = var.create_waf_web_acl && var.waf_web_acl_arn == ""
  attached_waf_acl_arn = var.waf_web_acl_arn != "" ? var.waf_web_acl_arn : one(aws_wafv2_web_acl.api[*].arn)
}

resource "aws_wafv2_web_acl" "api" {
  count = local.create_waf ? 1 : 0

  name        = "${local.name}-api"
  description = "JadeTrade API: AWS managed rules and a per-address rate limit"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  # Addresses AWS threat intelligence knows for bots and attacks.
  rule {
    name     = "AWSManagedRulesAmazonIpReputationList"
    priority = 10

    override_action {
      dynamic "count" {
        for_each = var.waf_count_only ? [1] : []
        content {}
      }
      dynamic "none" {
        for_each = var.waf_count_only ? [] : [1]
        content {}
      }
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-AWSManagedRulesAmazonIpReputationList"
      sampled_requests_enabled   = true
    }
  }

  # Log4j (CVE-2021-44228) and other known-exploit request patterns. Always blocks, even with
  # waf_count_only: these patterns have no legitimate use.
  rule {
    name     = "AWSManagedRulesKnownBadInputsRuleSet"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-AWSManagedRulesKnownBadInputsRuleSet"
      sampled_requests_enabled   = true
    }
  }

  # Tor exits and anonymising proxies are blocked. Cloud hosting ranges are where TradingView's
  # webhook servers and users' trading scripts run: those only count.
  rule {
    name     = "AWSManagedRulesAnonymousIpList"
    priority = 30

    override_action {
      dynamic "count" {
        for_each = var.waf_count_only ? [1] : []
        content {}
      }
      dynamic "none" {
        for_each = var.waf_count_only ? [] : [1]
        content {}
      }
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-AWSManagedRulesAnonymousIpList"
      sampled_requests_enabled   = true
    }
  }

  # OWASP-style protections. Frontend log batches and assistant conversations may exceed the
  # 8 KB body rule (the engine caps bodies itself), and webhook senders often send no
  # User-Agent: those two rules only count.
  rule {
    name     = "AWSManagedRulesCommonRuleSet"
    priority = 40

    override_action {
      dynamic "count" {
        for_each = var.waf_count_only ? [1] : []
        content {}
      }
      dynamic "none" {
        for_each = var.waf_count_only ? [] : [1]
        content {}
      }
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
        rule_action_override {
          name = "NoUserAgent_HEADER"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-AWSManagedRulesCommonRuleSet"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-limit-per-address"
    priority = 50

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit_per_ip
        evaluation_window_sec = 300
        aggregate_key_type    = "IP"

        scope_down_statement {
          not_statement {
            statement {
              byte_match_statement {
                search_string         = "/api/webhooks/"
                positional_constraint = "STARTS_WITH"

                field_to_match {
                  uri_path {}
                }

                text_transformation {
                  priority = 0
                  type     = "NONE"
                }
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-rate-limit-per-address"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${local.name}-api"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "api" {
  count = local.create_waf ? 1 : 0

  resource_arn = aws_lb.api.arn
  web_acl_arn  = aws_wafv2_web_acl.api[0].arn
}

resource "aws_wafv2_web_acl_association" "external" {
  count = var.waf_web_acl_arn != "" ? 1 : 0

  resource_arn = aws_lb.api.arn
  web_acl_arn  = var.waf_web_acl_arn
}

# WAF logs: only requests a rule blocked or counted, with credentials redacted (access tokens
# travel in Authorization, or in ?token= on WebSocket connects from browsers).
resource "aws_cloudwatch_log_group" "waf" {
  count = local.create_waf ? 1 : 0

  # WAF requires this prefix.
  name              = "aws-waf-logs-${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}

data "aws_iam_policy_document" "waf_logs" {
  count = local.create_waf ? 1 : 0

  statement {
    sid       = "WafDeliversLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.waf[0].arn}:*"]

    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "waf" {
  count = local.create_waf ? 1 : 0

  policy_name     = "${local.name}-waf-logs"
  policy_document = data.aws_iam_policy_document.waf_logs[0].json
}

resource "aws_wafv2_web_acl_logging_configuration" "api" {
  count = local.create_waf ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.api[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    query_string {}
  }

  logging_filter {
    default_behavior = "DROP"

    filter {
      behavior    = "KEEP"
      requirement = "MEETS_ANY"

      condition {
        action_condition {
          action = "BLOCK"
        }
      }
      condition {
        action_condition {
          action = "COUNT"
        }
      }
    }
  }

  depends_on = [aws_cloudwatch_log_resource_policy.waf]
}
