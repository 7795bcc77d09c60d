# What deploy.sh, DNS, dashboards and operators need from the stack. No output carries a
# secret value: secrets are referenced by ARN.

output "alb_dns_name" {
  description = "DNS name of the load balancer; point domain_name at it (alias or CNAME) when route53_zone_id is empty."
  value       = aws_lb.api.dns_name
}

output "alb_zone_id" {
  description = "Route 53 hosted zone id of the load balancer, for an alias record."
  value       = aws_lb.api.zone_id
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (the LoadBalancer dimension of its CloudWatch metrics)."
  value       = aws_lb.api.arn_suffix
}

output "api_url" {
  description = "Public URL of the API (the engine's PUBLIC_URL)."
  value       = local.public_url
}

output "webhook_url" {
  description = "URL TradingView alerts are sent to."
  value       = "${local.public_url}/api/webhooks/tradingview"
}

output "ecr_repository_url" {
  description = "ECR repository URL of the engine image (deploy.sh pushes here)."
  value       = aws_ecr_repository.engine.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "api_service_name" {
  description = "ECS service running `jadetrade serve --no-workers`."
  value       = aws_ecs_service.api.name
}

output "worker_service_name" {
  description = "ECS service running `jadetrade worker`."
  value       = aws_ecs_service.worker.name
}

output "task_definition_families" {
  description = "Task definition family per command (api, worker, migrate); deploy.sh registers new revisions in them."
  value       = { for svc, td in aws_ecs_task_definition.service : svc => td.family }
}

output "migration_task_definition_arn" {
  description = "Task definition revision Terraform registered for `jadetrade db upgrade` (deploy.sh runs the newest revision of its family)."
  value       = aws_ecs_task_definition.service["migrate"].arn
}

output "migration_network_configuration" {
  description = "awsvpcConfiguration for one-off tasks (migrations, key rotation) with `aws ecs run-task --network-configuration`."
  value = {
    awsvpcConfiguration = {
      subnets        = var.private_subnet_ids
      securityGroups = [aws_security_group.migrate.id]
      assignPublicIp = "DISABLED"
    }
  }
}

output "secret_arns" {
  description = "Secrets Manager ARN per engine setting (DATABASE_URL, REDIS_URL, ENCRYPTION_KEY, ...), and LOKI_PASSWORD when Loki needs one."
  value = merge(
    local.app_secrets,
    local.loki_auth ? { LOKI_PASSWORD = one(aws_secretsmanager_secret.loki_password[*].arn) } : {},
  )
}

output "secrets_to_fill" {
  description = "Secrets Terraform creates empty; put their values before the first deployment (runbook, 'Filling the secrets')."
  value = merge(
    { ENCRYPTION_KEY = aws_secretsmanager_secret.encryption_key.arn },
    { for env, secret in aws_secretsmanager_secret.optional : env => secret.arn },
    local.loki_auth ? { LOKI_PASSWORD = one(aws_secretsmanager_secret.loki_password[*].arn) } : {},
  )
}

output "db_endpoint" {
  description = "PostgreSQL host name (private)."
  value       = aws_db_instance.main.address
}

output "db_instance_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.main.identifier
}

output "cache_primary_endpoint" {
  description = "Primary endpoint of the cache (private, TLS)."
  value       = aws_elasticache_replication_group.main.primary_endpoint_address
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "log_group_names" {
  description = "CloudWatch log group per command; with loki_url set they hold nothing and the log router's group holds the router's own logs."
  value = merge(
    { for svc, group in aws_cloudwatch_log_group.service : svc => group.name },
    local.loki_enabled ? { log-router = one(aws_cloudwatch_log_group.log_router[*].name) } : {},
  )
}

output "alb_access_logs_bucket" {
  description = "S3 bucket holding the ALB access logs (under alb/)."
  value       = aws_s3_bucket.alb_logs.id
}

output "waf_web_acl_arn" {
  description = "Web ACL attached to the load balancer, or null when none is."
  value       = local.attached_waf_acl_arn
}

output "kms_key_arns" {
  description = "Customer managed keys: data (secrets, database, cache, images) and observability (logs, alarm topic)."
  value = {
    data          = aws_kms_key.data.arn
    observability = aws_kms_key.observability.arn
  }
}
