# The engine's Redis-compatible cache on ElastiCache (Valkey by default): the signal queue
# (a stream), WebSocket fan-out (pub/sub), rate limits and dedupe keys. TLS required, AUTH
# token, KMS at rest, a replica in another zone with automatic failover.

locals {
  cache_family = "${var.cache_engine}${split(".", var.cache_engine_version)[0]}"
  # ElastiCache names the nodes of a (non-cluster-mode) replication group <id>-001, -002, …
  cache_node_ids = [for i in range(1, var.cache_num_nodes + 1) : format("%s-%03d", local.name, i)]
}

resource "aws_elasticache_subnet_group" "main" {
  name        = local.name
  description = "JadeTrade cache subnets"
  subnet_ids  = local.database_subnet_ids
}

resource "aws_elasticache_parameter_group" "main" {
  name        = "${local.name}-${local.cache_family}"
  family      = local.cache_family
  description = "JadeTrade cache: never evict (the signal queue lives here)"

  # The signal stream must never be evicted to make room: a full cache refuses writes (and
  # the memory alarm fires well before) instead of silently dropping queued signals.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

resource "aws_elasticache_replication_group" "main" {
  replication_group_id = local.name
  description          = "JadeTrade engine queue, pub/sub and rate limits"

  engine               = var.cache_engine
  engine_version       = var.cache_engine_version
  node_type            = var.cache_node_type
  num_cache_clusters   = var.cache_num_nodes
  port                 = 6379
  parameter_group_name = aws_elasticache_parameter_group.main.name
  subnet_group_name    = aws_elasticache_subnet_group.main.name
  security_group_ids   = [aws_security_group.cache.id]

  automatic_failover_enabled = var.cache_multi_az
  multi_az_enabled           = var.cache_multi_az

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.cache_auth.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.cache_snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.cache["slow-log"].name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.cache["engine-log"].name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "engine-log"
  }

  lifecycle {
    precondition {
      condition     = !var.cache_multi_az || var.cache_num_nodes >= 2
      error_message = "cache_multi_az needs at least two nodes (cache_num_nodes >= 2)."
    }
  }
}
