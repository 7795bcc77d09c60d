# AWS provider configuration: one region, and tags applied to every resource.

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}
