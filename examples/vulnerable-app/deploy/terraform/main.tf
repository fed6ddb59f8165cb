# Cloud resources for the notes service. DO NOT USE: deliberately misconfigured.
# Checkov reads this offline; nothing is ever applied.

resource "aws_security_group" "notes" {
  name        = "notes"
  description = "Notes service"

  # FLAW tf-open-ssh: SSH open to the whole internet.
  ingress {
    description = "SSH"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_s3_bucket" "notes_backups" {
  bucket = "notes-backups-phalanx-demo"
}

# FLAW tf-public-bucket: anyone may read the backups.
resource "aws_s3_bucket_acl" "notes_backups" {
  bucket = aws_s3_bucket.notes_backups.id
  acl    = "public-read"
}
