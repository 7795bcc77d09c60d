# Terraform and provider versions for the JadeTrade engine's production stack, and the
# remote state backend (configured at `terraform init` time, see README.md).

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State holds generated database and cache passwords: keep it in an encrypted,
  # access-restricted bucket. Settings come from `-backend-config=backend.hcl`.
  backend "s3" {}
}
