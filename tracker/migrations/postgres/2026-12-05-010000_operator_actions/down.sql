DROP TABLE admin_actions;
DROP TABLE paused_stages;
