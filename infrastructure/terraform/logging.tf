# Where logs go. The engine writes one JSON object per line to stdout. With loki_url empty,
# the awslogs driver puts the lines in CloudWatch Logs; with loki_url set, a FireLens log
# router (AWS for Fluent Bit) parses each line and pushes it to Loki, labelled only by
# env, service, component, level and exchange — ids (request, user, signal, trade) stay in
# the line. The router's own logs, and every AWS service's, stay in CloudWatch.

locals {
  loki_enabled = var.loki_url != ""
  loki_parts = local.loki_enabled ? regex(
    "^(?P<scheme>https?)://(?P<host>[^/:]+)(?::(?P<port>[0-9]+))?/?$", var.loki_url
  ) : { scheme = "https", host = "", port = null }
  loki_tls        = local.loki_parts.scheme == "https"
  loki_port       = coalesce(local.loki_parts.port, local.loki_tls ? "443" : "80")
  loki_extra_port = local.loki_enabled && local.loki_port != "443"
  loki_auth       = local.loki_enabled && var.loki_username != ""

  # Options of Fluent Bit's built-in `loki` output. `labels` are fixed per deployment (the
  # engine writes the same env and service into every line); `label_keys` come from the
  # parsed line and are absent when the line has no such key.
  loki_output_options = merge(
    {
      Name            = "loki"
      host            = local.loki_parts.host
      port            = local.loki_port
      tls             = local.loki_tls ? "on" : "off"
      "tls.verify"    = "on"
      uri             = "/loki/api/v1/push"
      labels          = "env=${var.environment}, service=bot"
      label_keys      = "$component,$level,$exchange"
      line_format     = "json"
      drop_single_key = "off"
      Retry_Limit     = "5"
    },
    local.loki_auth ? { http_user = var.loki_username } : {},
    var.loki_tenant_id != "" ? { tenant_id = var.loki_tenant_id } : {},
  )

  # logConfiguration of each engine container, for both destinations; one is chosen below.
  log_configurations = {
    for svc in keys(local.services) : svc => {
      loki = {
        logDriver = "awsfirelens"
        options   = local.loki_output_options
        secretOptions = local.loki_auth ? [
          { name = "http_passwd", valueFrom = one(aws_secretsmanager_secret.loki_password[*].arn) },
        ] : []
      }
      cloudwatch = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[svc].name
          awslogs-region        = local.region
          awslogs-stream-prefix = svc
          # Never block the engine on log delivery; a full buffer drops lines instead.
          mode            = "non-blocking"
          max-buffer-size = "25m"
        }
      }
    }[local.loki_enabled ? "loki" : "cloudwatch"]
  }

  # The FireLens router: parses the JSON line (the image ships parse-json.conf) and adds the
  # task's ECS metadata to it. It must run as root and cannot run on a read-only root file
  # system (aws/aws-for-fluent-bit#928).
  log_router_container = {
    name      = "log-router"
    image     = var.log_router_image
    essential = true
    user      = "0"
    firelensConfiguration = {
      type = "fluentbit"
      options = {
        enable-ecs-log-metadata = "true"
        config-file-type        = "file"
        config-file-value       = "/fluent-bit/configs/parse-json.conf"
      }
    }
    memoryReservation      = 64
    readonlyRootFilesystem = false
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = one(aws_cloudwatch_log_group.log_router[*].name)
        awslogs-region        = local.region
        awslogs-stream-prefix = "log-router"
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each = local.services

  name              = "/ecs/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}

resource "aws_cloudwatch_log_group" "log_router" {
  count = local.loki_enabled ? 1 : 0

  name              = "/ecs/${local.name}/log-router"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}

resource "aws_cloudwatch_log_group" "ecs_exec" {
  name              = "/ecs/${local.name}/exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}

# RDS would create these on its own, unencrypted and kept forever; creating them first sets
# the key and the retention.
resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(local.db_log_exports)

  name              = "/aws/rds/instance/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}

resource "aws_cloudwatch_log_group" "cache" {
  for_each = toset(["slow-log", "engine-log"])

  name              = "/elasticache/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn
}
