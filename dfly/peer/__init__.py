"""The peer: downloader, uploader and seeder of the merged client."""
