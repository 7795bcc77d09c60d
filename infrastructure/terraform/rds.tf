# PostgreSQL on RDS: private, KMS-encrypted, TLS required, Multi-AZ, backed up, watched.
# pgvector comes with RDS PostgreSQL 16 and 17; the engine's first migration runs
# `CREATE EXTENSION IF NOT EXISTS vector` as the master user.

locals {
  db_major       = split(".", var.db_engine_version)[0]
  db_log_exports = ["postgresql", "upgrade"]
}

resource "aws_db_subnet_group" "main" {
  name_prefix = "${local.name}-"
  description = "JadeTrade PostgreSQL subnets"
  subnet_ids  = local.database_subnet_ids

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_parameter_group" "main" {
  name_prefix = "${local.name}-pg${local.db_major}-"
  family      = "postgres${local.db_major}"
  description = "JadeTrade PostgreSQL ${local.db_major}: TLS only, slow statements and DDL logged"

  # Refuse unencrypted connections, and old TLS.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "ssl_min_protocol_version"
    value = "TLSv1.2"
  }

  # Log schema changes and slow statements; not every statement (they carry user data).
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_ms)
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "main" {
  identifier     = local.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name  = var.db_name
  username = var.db_username
  password = random_password.db.result
  port     = 5432

  storage_type          = "gp3"
  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.data.arn

  multi_az               = var.db_multi_az
  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.main.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = var.db_iam_authentication

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "02:00-02:30"
  maintenance_window        = "sun:03:00-sun:04:00"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.name}-final"

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = false

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.data.arn
  performance_insights_retention_period = var.db_performance_insights_retention_days
  monitoring_interval                   = var.db_monitoring_interval
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = local.db_log_exports

  # A major version (e.g. "17") lets RDS apply minor versions by itself without a diff here.
  # Major upgrades are a planned change: see README.md, "PostgreSQL major upgrades".

  depends_on = [aws_cloudwatch_log_group.rds]
}
