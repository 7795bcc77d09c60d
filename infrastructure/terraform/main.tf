# Shared names, tags and look-ups used across the stack.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

# The ALB's nodes live in the public subnets; their address ranges are the only proxies whose
# X-Forwarded-For the engine believes (TRUSTED_PROXIES).
data "aws_subnet" "public" {
  for_each = toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  # e.g. "jadetrade-production": the prefix of every resource name.
  name       = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  tags = merge(var.tags, {
    Project     = var.name
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  database_subnet_ids = length(var.database_subnet_ids) > 0 ? var.database_subnet_ids : var.private_subnet_ids
  alb_subnet_cidrs    = sort([for s in data.aws_subnet.public : s.cidr_block])
  public_url          = "https://${var.domain_name}"
  cognito_region      = var.cognito_region != "" ? var.cognito_region : var.aws_region

  # The three commands the one engine image runs.
  services = {
    api     = ["serve", "--no-workers"]
    worker  = ["worker"]
    migrate = ["db", "upgrade"]
  }

  api_port     = 8000
  metrics_port = 9101
}
