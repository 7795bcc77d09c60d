# CloudWatch alarms on the load balancer, the services, PostgreSQL and the cache, all sent
# (on alarm and on recovery) to one KMS-encrypted SNS topic. Subscribe people with
# alarm_email_addresses, or point a pager (e.g. Grafana OnCall, PagerDuty) at the topic.

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.observability.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  for_each = toset(var.alarm_email_addresses)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]

  alb_dimensions = { LoadBalancer = aws_lb.api.arn_suffix }
  tg_dimensions = {
    LoadBalancer = aws_lb.api.arn_suffix
    TargetGroup  = aws_lb_target_group.api.arn_suffix
  }
  ecs_services = {
    api    = aws_ecs_service.api.name
    worker = aws_ecs_service.worker.name
  }

  # One entry per alarm: what is measured, and when it is wrong.
  alarms = merge(
    {
      alb-5xx = {
        description = "The load balancer itself answered 5xx (no healthy task, task refused or timed out)."
        namespace   = "AWS/ApplicationELB", metric = "HTTPCode_ELB_5XX_Count", statistic = "Sum"
        dimensions  = local.alb_dimensions, period = 300, periods = 1
        comparison  = "GreaterThanThreshold", threshold = var.alarm_5xx_threshold, missing = "notBreaching"
      }
      api-5xx = {
        description = "The API answered 5xx."
        namespace   = "AWS/ApplicationELB", metric = "HTTPCode_Target_5XX_Count", statistic = "Sum"
        dimensions  = local.tg_dimensions, period = 300, periods = 1
        comparison  = "GreaterThanThreshold", threshold = var.alarm_5xx_threshold, missing = "notBreaching"
      }
      api-unhealthy-tasks = {
        description = "An API task fails its /ready health check (PostgreSQL or Redis unreachable from it)."
        namespace   = "AWS/ApplicationELB", metric = "UnHealthyHostCount", statistic = "Maximum"
        dimensions  = local.tg_dimensions, period = 60, periods = 3
        comparison  = "GreaterThanThreshold", threshold = 0, missing = "notBreaching"
      }
      api-no-healthy-tasks = {
        description = "No API task is healthy: webhooks and the API are down."
        namespace   = "AWS/ApplicationELB", metric = "HealthyHostCount", statistic = "Minimum"
        dimensions  = local.tg_dimensions, period = 60, periods = 2
        comparison  = "LessThanThreshold", threshold = 1, missing = "breaching"
      }
      worker-not-running = {
        description = "No worker task is running: accepted signals are not being executed."
        namespace   = "ECS/ContainerInsights", metric = "RunningTaskCount", statistic = "Minimum"
        dimensions  = { ClusterName = aws_ecs_cluster.main.name, ServiceName = aws_ecs_service.worker.name }
        period      = 60, periods = 3
        comparison  = "LessThanThreshold", threshold = 1, missing = "breaching"
      }
      db-cpu = {
        description = "PostgreSQL CPU is high."
        namespace   = "AWS/RDS", metric = "CPUUtilization", statistic = "Average"
        dimensions  = { DBInstanceIdentifier = aws_db_instance.main.identifier }, period = 300, periods = 3
        comparison  = "GreaterThanThreshold", threshold = var.alarm_db_cpu_percent, missing = "missing"
      }
      db-free-storage = {
        description = "PostgreSQL is running out of storage (autoscaling may have reached db_max_allocated_storage)."
        namespace   = "AWS/RDS", metric = "FreeStorageSpace", statistic = "Minimum"
        dimensions  = { DBInstanceIdentifier = aws_db_instance.main.identifier }, period = 300, periods = 1
        comparison  = "LessThanThreshold", threshold = var.alarm_db_free_storage_bytes, missing = "missing"
      }
      db-connections = {
        description = "PostgreSQL connections are close to max_connections."
        namespace   = "AWS/RDS", metric = "DatabaseConnections", statistic = "Maximum"
        dimensions  = { DBInstanceIdentifier = aws_db_instance.main.identifier }, period = 300, periods = 2
        comparison  = "GreaterThanThreshold", threshold = var.alarm_db_connections, missing = "missing"
      }
    },
    {
      for pair in setproduct(keys(local.ecs_services), ["CPUUtilization", "MemoryUtilization"]) :
      "${pair[0]}-${pair[1] == "CPUUtilization" ? "cpu" : "memory"}" => {
        description = "The ${pair[0]} service's average ${pair[1] == "CPUUtilization" ? "CPU" : "memory"} is high (autoscaling at its maximum, or a runaway task)."
        namespace   = "AWS/ECS", metric = pair[1], statistic = "Average"
        dimensions  = { ClusterName = aws_ecs_cluster.main.name, ServiceName = local.ecs_services[pair[0]] }
        period      = 300, periods = 3
        comparison  = "GreaterThanThreshold"
        threshold   = pair[1] == "CPUUtilization" ? var.alarm_task_cpu_percent : var.alarm_task_memory_percent
        missing     = "missing"
      }
    },
    {
      for pair in setproduct(local.cache_node_ids, ["EngineCPUUtilization", "DatabaseMemoryUsagePercentage"]) :
      "cache-${pair[0]}-${pair[1] == "EngineCPUUtilization" ? "cpu" : "memory"}" => {
        description = "Cache node ${pair[0]}: ${pair[1] == "EngineCPUUtilization" ? "engine CPU is high (commands queue up behind it)" : "memory is filling; with noeviction it refuses writes when full"}."
        namespace   = "AWS/ElastiCache", metric = pair[1], statistic = "Average"
        dimensions  = { CacheClusterId = pair[0] }, period = 300, periods = 2
        comparison  = "GreaterThanThreshold"
        threshold   = pair[1] == "EngineCPUUtilization" ? var.alarm_cache_cpu_percent : var.alarm_cache_memory_percent
        missing     = "missing"
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "main" {
  for_each = local.alarms

  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  dimensions          = each.value.dimensions
  period              = each.value.period
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing

  actions_enabled = true
  alarm_actions   = local.alarm_actions
  ok_actions      = local.alarm_actions
}

# Percentiles need extended_statistic, so this one stands alone.
resource "aws_cloudwatch_metric_alarm" "api_p99_latency" {
  alarm_name          = "${local.name}-api-p99-latency"
  alarm_description   = "p99 API response time is high; TradingView abandons a webhook after 3 s."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p99"
  dimensions          = local.tg_dimensions
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_p99_response_seconds
  treat_missing_data  = "notBreaching"

  actions_enabled = true
  alarm_actions   = local.alarm_actions
  ok_actions      = local.alarm_actions
}
