"""The supernode: tracker, scheduler and CDN for its tasks."""
