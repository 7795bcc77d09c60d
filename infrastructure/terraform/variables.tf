# Inputs of the production stack. Every variable is described in README.md as well.

# --------------------------------------------------------------------------- general
variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
}

variable "name" {
  description = "Project name: the first part of every resource name."
  type        = string
  default     = "jadetrade"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment name, the second part of every resource name; also the engine's ENVIRONMENT setting (production or staging)."
  type        = string
  default     = "production"

  validation {
    condition     = contains(["production", "staging"], var.environment)
    error_message = "environment must be production or staging."
  }
}

variable "tags" {
  description = "Extra tags for every resource (Project, Environment and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

# --------------------------------------------------------------------------- network
variable "vpc_id" {
  description = "The existing VPC to deploy into."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (at least two availability zones) for the load balancer."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An ALB needs public subnets in at least two availability zones."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two availability zones, with a NAT route to the internet) for the engine's tasks."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give private subnets in at least two availability zones."
  }
}

variable "database_subnet_ids" {
  description = "Subnets for PostgreSQL and the cache; empty means the private subnets. They need no internet route."
  type        = list(string)
  default     = []
}

variable "alb_ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the load balancer on 80 and 443. TradingView and users' browsers come from anywhere, hence the default."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "egress_https_cidr_blocks" {
  description = "Ranges the tasks may reach on 443: exchanges, Anthropic, OpenAI, Telegram, Cognito and AWS APIs, none of which publish fixed ranges."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups (e.g. a Prometheus or Grafana Alloy collector) allowed to scrape /metrics on the API (8000) and the workers (9101)."
  type        = list(string)
  default     = []
}

# --------------------------------------------------------------------------- TLS, DNS, edge
variable "domain_name" {
  description = "Public host name of the API, e.g. api.jadetrade.example; becomes PUBLIC_URL (https://<domain_name>)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (in aws_region) covering domain_name, for the HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone in which to create the alias record for domain_name; empty to manage DNS elsewhere."
  type        = string
  default     = ""
}

variable "alb_ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.2 and 1.3 only by default)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("TLS13-1-2|TLS-1-2", var.alb_ssl_policy))
    error_message = "Choose a policy whose minimum protocol is TLS 1.2 (ELBSecurityPolicy-TLS13-1-2-* or *-TLS-1-2-*)."
  }
}

variable "alb_idle_timeout" {
  description = "Seconds an idle connection stays open on the ALB; must exceed the engine's WebSocket ping interval (20 s) and heartbeat (25 s)."
  type        = number
  default     = 300

  validation {
    condition     = var.alb_idle_timeout >= 60 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be between 60 and 4000 seconds."
  }
}

variable "alb_deregistration_delay" {
  description = "Seconds the ALB keeps draining a stopping API task (open WebSockets are closed after it; clients reconnect)."
  type        = number
  default     = 30
}

variable "alb_deletion_protection" {
  description = "Refuse to delete the load balancer (turn off only to tear the stack down)."
  type        = bool
  default     = true
}

variable "alb_access_logs_retention_days" {
  description = "Days ALB access logs are kept in their S3 bucket."
  type        = number
  default     = 90
}

variable "create_waf_web_acl" {
  description = "Create and attach this stack's own WAF web ACL (AWS managed rules and a per-address rate limit). Ignored when waf_web_acl_arn is set."
  type        = bool
  default     = true
}

variable "waf_web_acl_arn" {
  description = "An existing regional WAFv2 web ACL to attach to the ALB instead of the stack's own (e.g. one managed by Firewall Manager); empty for none."
  type        = string
  default     = ""
}

variable "waf_count_only" {
  description = "Run the stack's managed WAF rule groups in count mode (observe without blocking), e.g. for the first days after launch; the known-bad-inputs (Log4j) group blocks regardless."
  type        = bool
  default     = false
}

variable "waf_rate_limit_per_ip" {
  description = "Requests per client address per 5 minutes the WAF allows to everything but the webhook path (TradingView sends every user's alerts from the same four addresses)."
  type        = number
  default     = 3000
}

# --------------------------------------------------------------------------- image
variable "ecr_repository_name" {
  description = "Name of the ECR repository holding the engine image."
  type        = string
  default     = "jadetrade/bot-engine"
}

variable "image_tag" {
  description = "Engine image tag the task definitions start from (deploy.sh registers later revisions); must exist in the repository before the services are created."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid Docker tag other than latest (tags are immutable)."
  }
}

variable "log_router_image" {
  description = "FireLens log router image (AWS for Fluent Bit), used only when loki_url is set. Pin a version."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-for-fluent-bit:3.2.1"
}

# --------------------------------------------------------------------------- engine settings
variable "cognito_region" {
  description = "Region of the Cognito user pool (COGNITO_REGION); empty means aws_region."
  type        = string
  default     = ""
}

variable "cognito_user_pool_id" {
  description = "Cognito user pool whose access tokens the engine accepts (COGNITO_USER_POOL_ID)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]_[A-Za-z0-9]+$", var.cognito_user_pool_id)) && var.cognito_user_pool_id != "us-east-1_localdev"
    error_message = "cognito_user_pool_id must be a real pool id such as eu-west-1_AbC123xyz."
  }
}

variable "cognito_app_client_id" {
  description = "Cognito app client id the tokens are issued to (COGNITO_APP_CLIENT_ID)."
  type        = string

  validation {
    condition     = length(var.cognito_app_client_id) > 0 && var.cognito_app_client_id != "jadetrade-local-client"
    error_message = "cognito_app_client_id must be the real app client id."
  }
}

variable "cors_origins" {
  description = "Browser origins allowed to call the API (CORS_ORIGINS), e.g. [\"https://app.jadetrade.example\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.cors_origins, "*")
    error_message = "List origins explicitly; the engine refuses '*' in production."
  }
}

variable "log_level" {
  description = "Engine log level (LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL."
  }
}

variable "worker_concurrency" {
  description = "Signals one worker task executes at once (WORKER_CONCURRENCY)."
  type        = number
  default     = 4
}

variable "tradingview_ip_allowlist" {
  description = "Accept webhooks only from TradingView's published addresses (TRADINGVIEW_IP_ALLOWLIST); the client address is taken from X-Forwarded-For as added by the ALB."
  type        = bool
  default     = true
}

variable "extra_environment" {
  description = "Further non-secret engine settings as environment variables (e.g. AI_MODEL, MAX_ALERT_AGE_S). Cannot override the settings this stack sets, and must not hold secrets."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment), [
      "DATABASE_URL", "REDIS_URL", "ENCRYPTION_KEY", "ENCRYPTION_KEYS_RETIRED", "ANTHROPIC_API_KEY",
      "OPENAI_API_KEY", "TELEGRAM_BOT_TOKEN", "LOKI_PASSWORD", "LOKI_URL", "EXCHANGE_API_URLS",
      "EXCHANGE_WS_URLS", "AUTH_MODE",
    ])) == 0
    error_message = "Secrets belong in Secrets Manager (see secrets.tf); LOKI_URL, EXCHANGE_*_URLS and AUTH_MODE may not be set here."
  }
}

variable "anthropic_enabled" {
  description = "Give the engine ANTHROPIC_API_KEY from Secrets Manager (fill the secret before deploying). Without it the assistant answers in offline mode."
  type        = bool
  default     = false
}

variable "openai_enabled" {
  description = "Give the engine OPENAI_API_KEY from Secrets Manager (embeddings through OpenAI instead of the local model)."
  type        = bool
  default     = false
}

variable "telegram_enabled" {
  description = "Give the engine TELEGRAM_BOT_TOKEN from Secrets Manager (Telegram notifications)."
  type        = bool
  default     = false
}

# --------------------------------------------------------------------------- logs to Loki
variable "loki_url" {
  description = "Loki base URL (e.g. https://logs-prod-012.grafana.net). When set, a FireLens log router ships the engine's JSON lines there; when empty they go to CloudWatch Logs."
  type        = string
  default     = ""

  validation {
    condition     = var.loki_url == "" || can(regex("^https?://[^/:]+(:[0-9]+)?/?$", var.loki_url))
    error_message = "loki_url must be scheme://host[:port] with no path (the push path is added)."
  }
}

variable "loki_username" {
  description = "Basic-auth user for Loki (e.g. a Grafana Cloud stack's user id); the password goes in the loki-password secret. Empty for no authentication."
  type        = string
  default     = ""
}

variable "loki_tenant_id" {
  description = "Tenant (X-Scope-OrgID) of a multi-tenant Loki; empty for none."
  type        = string
  default     = ""
}

variable "loki_egress_cidr_blocks" {
  description = "Ranges the log router may reach on loki_url's port when it is not 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --------------------------------------------------------------------------- capacity
variable "api_cpu" {
  description = "CPU units of one API task (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "api_memory" {
  description = "Memory (MiB) of one API task."
  type        = number
  default     = 2048
}

variable "api_desired_count" {
  description = "API tasks at creation; afterwards autoscaling owns the count."
  type        = number
  default     = 2
}

variable "api_min_count" {
  description = "Fewest API tasks autoscaling keeps (two or more spread across zones)."
  type        = number
  default     = 2
}

variable "api_max_count" {
  description = "Most API tasks autoscaling starts."
  type        = number
  default     = 8
}

variable "api_cpu_target" {
  description = "Average CPU (%) the API's target-tracking policy aims for."
  type        = number
  default     = 60
}

variable "api_requests_per_target" {
  description = "ALB requests per API task per minute the request-count policy aims for."
  type        = number
  default     = 3000
}

variable "worker_cpu" {
  description = "CPU units of one worker task."
  type        = number
  default     = 512
}

variable "worker_memory" {
  description = "Memory (MiB) of one worker task."
  type        = number
  default     = 1024
}

variable "worker_desired_count" {
  description = "Worker tasks at creation; afterwards autoscaling owns the count."
  type        = number
  default     = 2
}

variable "worker_min_count" {
  description = "Fewest worker tasks autoscaling keeps."
  type        = number
  default     = 2
}

variable "worker_max_count" {
  description = "Most worker tasks autoscaling starts."
  type        = number
  default     = 6
}

variable "worker_cpu_target" {
  description = "Average CPU (%) the worker's target-tracking policy aims for."
  type        = number
  default     = 60
}

variable "worker_queue_lag_metric_namespace" {
  description = "CloudWatch namespace of a published signal queue lag metric (see README, 'Scaling the workers on queue lag'); empty to scale the workers on CPU only."
  type        = string
  default     = ""
}

variable "worker_queue_lag_metric_name" {
  description = "Name of the queue lag metric in worker_queue_lag_metric_namespace."
  type        = string
  default     = "SignalQueueLag"
}

variable "worker_queue_lag_per_task_target" {
  description = "Undelivered signals per running worker task the queue-lag policy aims for."
  type        = number
  default     = 10
}

variable "migrate_cpu" {
  description = "CPU units of the one-off migration task."
  type        = number
  default     = 256
}

variable "migrate_memory" {
  description = "Memory (MiB) of the one-off migration task."
  type        = number
  default     = 512
}

variable "enable_execute_command" {
  description = "Allow `aws ecs execute-command` into running tasks (sessions are encrypted and logged). Off by default: a shell in a task can read its secrets."
  type        = bool
  default     = false
}

variable "container_health_checks" {
  description = "Give the containers a health check run inside them (python from the image fetches /health on the API and /metrics on the workers)."
  type        = bool
  default     = true
}

# --------------------------------------------------------------------------- PostgreSQL
variable "db_engine_version" {
  description = "PostgreSQL version on RDS (16 or 17; a major version lets minor upgrades apply automatically). pgvector ships with both."
  type        = string
  default     = "17"

  validation {
    condition     = contains(["16", "17"], split(".", var.db_engine_version)[0])
    error_message = "db_engine_version must be PostgreSQL 16 or 17."
  }
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m7g.large"
}

variable "db_allocated_storage" {
  description = "Initial storage (GiB, gp3)."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Ceiling (GiB) for storage autoscaling."
  type        = number
  default     = 500
}

variable "db_name" {
  description = "Name of the engine's database."
  type        = string
  default     = "jadetrade"
}

variable "db_username" {
  description = "Master user name; its generated password is kept in the database-url secret."
  type        = string
  default     = "jadetrade"
}

variable "db_multi_az" {
  description = "Run a synchronous standby in a second zone (automatic failover)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "Keep between 7 and 35 days of backups."
  }
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database (turn off only to tear the stack down; a final snapshot is taken either way)."
  type        = bool
  default     = true
}

variable "db_iam_authentication" {
  description = "Also accept IAM authentication tokens (for people connecting with their own IAM identity; the engine uses its password)."
  type        = bool
  default     = true
}

variable "db_performance_insights_retention_days" {
  description = "Days of Performance Insights history (7 is free)."
  type        = number
  default     = 7
}

variable "db_monitoring_interval" {
  description = "Seconds between enhanced monitoring samples (1, 5, 10, 15, 30 or 60)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 5, 10, 15, 30, 60], var.db_monitoring_interval)
    error_message = "db_monitoring_interval must be 1, 5, 10, 15, 30 or 60."
  }
}

variable "db_log_min_duration_ms" {
  description = "Statements slower than this (ms) are logged (log_min_duration_statement)."
  type        = number
  default     = 500
}

# --------------------------------------------------------------------------- cache
variable "cache_engine" {
  description = "ElastiCache engine: valkey or redis (Redis OSS)."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.cache_engine)
    error_message = "cache_engine must be valkey or redis."
  }
}

variable "cache_engine_version" {
  description = "Engine version (e.g. 8.0 for Valkey, 7.1 for Redis OSS)."
  type        = string
  default     = "8.0"
}

variable "cache_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.m7g.large"
}

variable "cache_num_nodes" {
  description = "Nodes in the replication group: one primary and the rest replicas."
  type        = number
  default     = 2
}

variable "cache_multi_az" {
  description = "Multi-AZ with automatic failover to a replica (needs cache_num_nodes >= 2)."
  type        = bool
  default     = true
}

variable "cache_snapshot_retention_days" {
  description = "Days of daily cache snapshots."
  type        = number
  default     = 7
}

# --------------------------------------------------------------------------- logs and alarms
variable "log_retention_days" {
  description = "Days CloudWatch keeps the stack's log groups (365 or more)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value of at least 365 days."
  }
}

variable "alarm_email_addresses" {
  description = "Addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "alarm_5xx_threshold" {
  description = "5xx responses (from the ALB itself, or from the API) in 5 minutes that raise an alarm."
  type        = number
  default     = 10
}

variable "alarm_p99_response_seconds" {
  description = "p99 target response time (s) over 5 minutes that raises an alarm; TradingView gives up on a webhook after 3 s."
  type        = number
  default     = 1
}

variable "alarm_task_cpu_percent" {
  description = "Average ECS service CPU (%) that raises an alarm."
  type        = number
  default     = 85
}

variable "alarm_task_memory_percent" {
  description = "Average ECS service memory (%) that raises an alarm."
  type        = number
  default     = 85
}

variable "alarm_db_cpu_percent" {
  description = "RDS CPU (%) that raises an alarm."
  type        = number
  default     = 80
}

variable "alarm_db_free_storage_bytes" {
  description = "RDS free storage (bytes) below which an alarm is raised."
  type        = number
  default     = 10737418240
}

variable "alarm_db_connections" {
  description = "RDS connections above which an alarm is raised (about 80 % of the instance's max_connections)."
  type        = number
  default     = 600
}

variable "alarm_cache_cpu_percent" {
  description = "ElastiCache engine CPU (%) that raises an alarm."
  type        = number
  default     = 80
}

variable "alarm_cache_memory_percent" {
  description = "ElastiCache memory use (% of maxmemory) that raises an alarm; with noeviction the cache refuses writes when full."
  type        = number
  default     = 80
}
