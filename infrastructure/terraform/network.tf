# Security groups on the existing VPC. Traffic allowed, and nothing else:
#   internet -> ALB 443/80;  ALB -> API tasks 8000;  scrapers -> API 8000, workers 9101;
#   tasks -> PostgreSQL 5432, cache 6379, anywhere 443 (exchanges, LLM APIs, AWS APIs);
#   PostgreSQL and the cache open no connections of their own.
# DNS (the VPC resolver) and time sync are link-local and need no rule.

locals {
  # Task security groups that reach PostgreSQL, and those that reach the cache too.
  db_client_sgs = {
    api     = aws_security_group.api.id
    worker  = aws_security_group.worker.id
    migrate = aws_security_group.migrate.id
  }
  cache_client_sgs = {
    api    = aws_security_group.api.id
    worker = aws_security_group.worker.id
  }
  # Task security groups that go out to the internet on 443 (and to Loki when it is elsewhere).
  egress_sgs = local.db_client_sgs

  egress_https = {
    for pair in setproduct(keys(local.egress_sgs), var.egress_https_cidr_blocks) :
    "${pair[0]}-${pair[1]}" => { sg = local.egress_sgs[pair[0]], cidr = pair[1] }
  }
  loki_egress = {
    for pair in setproduct(keys(local.egress_sgs), local.loki_extra_port ? var.loki_egress_cidr_blocks : []) :
    "${pair[0]}-${pair[1]}" => { sg = local.egress_sgs[pair[0]], cidr = pair[1] }
  }
  scraper_rules = merge(
    { for sg in var.metrics_scraper_security_group_ids : "api-${sg}" => { target = aws_security_group.api.id, source = sg, port = local.api_port } },
    { for sg in var.metrics_scraper_security_group_ids : "worker-${sg}" => { target = aws_security_group.worker.id, source = sg, port = local.metrics_port } },
  )
}

# --------------------------------------------------------------------------- load balancer
resource "aws_security_group" "alb" {
  name_prefix = "${local.name}-alb-"
  description = "JadeTrade API load balancer: HTTPS (and HTTP to redirect) from the internet"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.alb_ingress_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from TradingView webhooks, browsers and API clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Port 80 is open only so that plain-HTTP visitors get a 301 to HTTPS; the listener serves nothing else (see aws_lb_listener.http).
  for_each = toset(var.alb_ingress_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP, answered only with a redirect to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Forward requests and health checks to the API tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.api_port
  to_port                      = local.api_port
  referenced_security_group_id = aws_security_group.api.id
}

# --------------------------------------------------------------------------- tasks
resource "aws_security_group" "api" {
  name_prefix = "${local.name}-api-"
  description = "JadeTrade API tasks: HTTP from the ALB only"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "Requests and health checks from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.api_port
  to_port                      = local.api_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_security_group" "worker" {
  name_prefix = "${local.name}-worker-"
  description = "JadeTrade worker tasks: no inbound traffic except metrics scrapes"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "migrate" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: deploy.sh and the runbook start one-off tasks (migrations, key rotation) with `aws ecs run-task` and this group (output migration_network_configuration); no long-running resource uses it.
  name_prefix = "${local.name}-migrate-"
  description = "JadeTrade one-off tasks (migrations, key rotation): no inbound traffic"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "metrics_scrape" {
  for_each = local.scraper_rules

  security_group_id            = each.value.target
  description                  = "Prometheus metrics scrape (/metrics)"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = each.value.source
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  for_each = local.egress_https

  security_group_id = each.value.sg
  description       = "HTTPS to exchanges, Anthropic/OpenAI, Telegram, Cognito JWKS and AWS APIs (ECR, Secrets Manager, CloudWatch) through the NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "tasks_loki" {
  for_each = local.loki_egress

  security_group_id = each.value.sg
  description       = "Log router to Loki on its own port"
  ip_protocol       = "tcp"
  from_port         = local.loki_port
  to_port           = local.loki_port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  for_each = local.db_client_sgs

  security_group_id            = each.value
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_cache" {
  for_each = local.cache_client_sgs

  security_group_id            = each.value
  description                  = "Valkey/Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.cache.id
}

# --------------------------------------------------------------------------- data stores
resource "aws_security_group" "db" {
  name_prefix = "${local.name}-db-"
  description = "JadeTrade PostgreSQL: 5432 from the engine's tasks only; no egress"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  for_each = local.db_client_sgs

  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the ${each.key} tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = each.value
}

resource "aws_security_group" "cache" {
  name_prefix = "${local.name}-cache-"
  description = "JadeTrade cache: 6379 from the API and worker tasks only; no egress"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "cache_from_tasks" {
  for_each = local.cache_client_sgs

  security_group_id            = aws_security_group.cache.id
  description                  = "Valkey/Redis from the ${each.key} tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = each.value
}
