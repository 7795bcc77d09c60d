# Every secret the engine reads, in Secrets Manager under the data key. Task definitions
# reference them by ARN (`secrets`/`valueFrom`), so no value appears in a task definition,
# the ECS console or an environment listing.
#
# Terraform writes the values it generates (the database and cache URLs). The others are put
# by an operator (docs/runbooks/deployment.md, "Filling the secrets") and never pass through
# Terraform, so they are not in its state.

resource "random_password" "db" {
  length  = 40
  special = false # the password sits inside a URL
}

resource "random_password" "cache_auth" {
  length  = 64
  special = false # ElastiCache AUTH tokens allow few symbols, and it sits inside a URL
}

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:The value is a URL built from the RDS master password that Terraform generates; rotating it means replacing random_password.db and redeploying so both change together (runbook, "Rotating secrets"). A rotation Lambda would change the password under running tasks without restarting them.
  name                    = "${local.name}/database-url"
  description             = "DATABASE_URL of the JadeTrade engine (PostgreSQL master user)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgresql://${var.db_username}:${random_password.db.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/${var.db_name}"
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:The value is a URL built from the ElastiCache AUTH token that Terraform generates; it is rotated with ElastiCache's ROTATE strategy (old and new token both valid) and a redeploy (runbook, "Rotating secrets"), which a rotation Lambda cannot coordinate.
  name                    = "${local.name}/redis-url"
  description             = "REDIS_URL of the JadeTrade engine (rediss://, AUTH token)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.cache_auth.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:${aws_elasticache_replication_group.main.port}/0"
}

resource "aws_secretsmanager_secret" "encryption_key" {
  #checkov:skip=CKV2_AWS_57:This key encrypts users' exchange API keys stored in PostgreSQL; replacing the value alone would make them unreadable. It is rotated by the engine (`jadetrade keys rotate`, with the old key kept in ENCRYPTION_KEYS_RETIRED meanwhile), as the runbook describes.
  name                    = "${local.name}/encryption-key"
  description             = "ENCRYPTION_KEY of the JadeTrade engine (64 hex characters; put by an operator)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret" "encryption_keys_retired" {
  #checkov:skip=CKV2_AWS_57:Holds earlier ENCRYPTION_KEY values only while `jadetrade keys rotate` re-encrypts under the new key; it is emptied by hand when rotation is done, so there is nothing to rotate automatically.
  name                    = "${local.name}/encryption-keys-retired"
  description             = "ENCRYPTION_KEYS_RETIRED of the JadeTrade engine (JSON list; empty outside a key rotation)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

# Starts as an empty list; operators change it during a key rotation, and Terraform leaves
# their value alone.
resource "aws_secretsmanager_secret_version" "encryption_keys_retired" {
  secret_id     = aws_secretsmanager_secret.encryption_keys_retired.id
  secret_string = "[]"

  lifecycle {
    ignore_changes = [secret_string]
  }
}

locals {
  # Optional third-party credentials, one secret each when turned on.
  optional_secrets = {
    for env, enabled in {
      ANTHROPIC_API_KEY  = var.anthropic_enabled
      OPENAI_API_KEY     = var.openai_enabled
      TELEGRAM_BOT_TOKEN = var.telegram_enabled
    } : env => lower(replace(env, "_", "-")) if enabled
  }
}

resource "aws_secretsmanager_secret" "optional" {
  #checkov:skip=CKV2_AWS_57:These are API keys issued by Anthropic, OpenAI and Telegram; only their consoles can issue new ones, after which an operator puts the new value and redeploys (runbook, "Rotating secrets").
  for_each = local.optional_secrets

  name                    = "${local.name}/${each.value}"
  description             = "${each.key} of the JadeTrade engine (put by an operator)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret" "loki_password" {
  #checkov:skip=CKV2_AWS_57:A token issued by the Loki operator (e.g. a Grafana Cloud access policy token); it is rotated there and put here by an operator.
  count = local.loki_auth ? 1 : 0

  name                    = "${local.name}/loki-password"
  description             = "Password (token) the log router sends to Loki (put by an operator)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

locals {
  # Environment variable name => secret ARN, for the engine's containers.
  app_secrets_required = {
    DATABASE_URL            = aws_secretsmanager_secret.database_url.arn
    REDIS_URL               = aws_secretsmanager_secret.redis_url.arn
    ENCRYPTION_KEY          = aws_secretsmanager_secret.encryption_key.arn
    ENCRYPTION_KEYS_RETIRED = aws_secretsmanager_secret.encryption_keys_retired.arn
  }
  app_secrets = merge(
    local.app_secrets_required,
    { for env, secret in aws_secretsmanager_secret.optional : env => secret.arn },
  )

  # Everything the task execution role may read.
  readable_secret_arns = concat(
    values(local.app_secrets),
    aws_secretsmanager_secret.loki_password[*].arn,
  )
}
