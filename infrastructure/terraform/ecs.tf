# The engine on ECS Fargate: one image, three task definitions (api, worker, migrate), two
# long-running services. Services roll with a deployment circuit breaker that rolls back by
# itself. Terraform creates the first revisions; infrastructure/scripts/deploy.sh registers
# later ones (a new image) from the newest revision of each family, so the services ignore
# task definition changes made outside Terraform.

locals {
  image = "${aws_ecr_repository.engine.repository_url}:${var.image_tag}"

  # Non-secret settings, as plain environment variables. Secrets never go here: they are in
  # local.app_secrets and reach the containers through `secrets` (valueFrom).
  app_environment_base = {
    ENVIRONMENT              = var.environment
    HOST                     = "0.0.0.0"
    PORT                     = tostring(local.api_port)
    PUBLIC_URL               = local.public_url
    CORS_ORIGINS             = jsonencode(var.cors_origins)
    LOG_FORMAT               = "json"
    LOG_LEVEL                = var.log_level
    COGNITO_REGION           = local.cognito_region
    COGNITO_USER_POOL_ID     = var.cognito_user_pool_id
    COGNITO_APP_CLIENT_ID    = var.cognito_app_client_id
    WORKER_CONCURRENCY       = tostring(var.worker_concurrency)
    WORKER_METRICS_PORT      = tostring(local.metrics_port)
    TRUSTED_PROXIES          = jsonencode(local.alb_subnet_cidrs)
    TRADINGVIEW_IP_ALLOWLIST = tostring(var.tradingview_ip_allowlist)
  }
  # The stack's own settings win over extra_environment.
  app_environment = merge(var.extra_environment, local.app_environment_base)

  app_environment_list = [for k in sort(keys(local.app_environment)) : { name = k, value = local.app_environment[k] }]
  app_secret_list      = [for k in sort(keys(local.app_secrets)) : { name = k, valueFrom = local.app_secrets[k] }]

  task_sizes = {
    api     = { cpu = var.api_cpu, memory = var.api_memory }
    worker  = { cpu = var.worker_cpu, memory = var.worker_memory }
    migrate = { cpu = var.migrate_cpu, memory = var.migrate_memory }
  }

  port_mappings = {
    api     = [{ name = "http", containerPort = local.api_port, protocol = "tcp" }]
    worker  = [{ name = "metrics", containerPort = local.metrics_port, protocol = "tcp" }]
    migrate = []
  }

  # Checks run inside the container with the image's python: liveness of the API, and the
  # workers' metrics endpoint (served by the worker process itself). The ALB checks /ready.
  health_checks = {
    api = {
      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.api_port}/health', timeout=3)"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
    }
    worker = {
      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.metrics_port}/metrics', timeout=3)"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
    }
    migrate = {}
  }

  app_containers = {
    for svc, command in local.services : svc => merge(
      {
        name                   = svc
        image                  = local.image
        essential              = true
        command                = command
        environment            = local.app_environment_list
        secrets                = local.app_secret_list
        portMappings           = local.port_mappings[svc]
        readonlyRootFilesystem = true
        privileged             = false
        # The root file system is read-only; /tmp is a small task-local scratch volume.
        mountPoints     = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
        linuxParameters = { initProcessEnabled = true }
        # The API drains for up to 10 s (uvicorn's graceful shutdown); workers finish the
        # signals in hand.
        stopTimeout      = 30
        ulimits          = [{ name = "nofile", softLimit = 65535, hardLimit = 65535 }]
        logConfiguration = local.log_configurations[svc]
      },
      var.container_health_checks ? local.health_checks[svc] : {},
    )
  }
}

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.data.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.ecs_exec.name
      }
    }
  }
}

resource "aws_ecs_task_definition" "service" {
  for_each = local.services

  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.task_sizes[each.key].cpu
  memory                   = local.task_sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat(
    [local.app_containers[each.key]],
    local.loki_enabled ? [local.log_router_container] : [],
  ))

  lifecycle {
    precondition {
      condition     = !local.loki_auth || local.loki_tls
      error_message = "loki_url is plain http but loki_username is set: the Loki password would cross the network in clear text."
    }
  }
}

resource "aws_ecs_service" "api" {
  name             = "api"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.service["api"].arn
  desired_count    = var.api_desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_execute_command             = var.enable_execute_command
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.api.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = local.api_port
  }

  lifecycle {
    # Autoscaling owns the count; deploy.sh owns the revision.
    ignore_changes = [desired_count, task_definition]
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution]
}

resource "aws_ecs_service" "worker" {
  name             = "worker"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.service["worker"].arn
  desired_count    = var.worker_desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # New workers start before old ones stop; the queue's consumer group shares the work and
  # takes over what a stopped worker left unacknowledged.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = var.enable_execute_command
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  lifecycle {
    ignore_changes = [desired_count, task_definition]
  }

  depends_on = [aws_iam_role_policy.execution]
}
