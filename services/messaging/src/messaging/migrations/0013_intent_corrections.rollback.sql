DROP SEQUENCE intent_corrections_version;
DROP TABLE intent_corrections;
