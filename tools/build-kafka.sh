#!/usr/bin/env bash
# Install an Apache Kafka broker (KRaft) as plain jars from Maven Central, for the tests'
# loopback broker (tools/devstack/kafka.py), run with the machine's java: no tarball, no Docker.
#
# A throwaway pom depends on the broker (kafka_2.13, which also holds kafka.tools.StorageTool
# for `format`), the tools jar (ConsoleProducer/ConsoleConsumer/TopicCommand) and the log4j2
# SLF4J 1.x binding that Kafka's own distribution ships, then `dependency:copy-dependencies`
# flattens the runtime closure into DEST/libs, so `java -cp 'DEST/libs/*' kafka.Kafka
# server.properties` works. connect-runtime (a dependency of kafka-tools) is excluded: no
# console tool needs it and it would double the download (Jetty, Jersey, ...).
# The Maven local repo is DEST's sibling `m2`, not ~/.m2: everything stays under the tools
# cache (one `rm -rf` resets it), the user's own repo is left alone, and ~/.m2/settings.xml
# (mirrors, proxies) still applies.
#
# Usage: build-kafka.sh VERSION DEST   (e.g. 4.3.1 ~/.cache/support-inbox/kafka-4.3.1)
set -euo pipefail
version=$1 dest=${2%/}
marker="$dest/.installed"
if [ "$(cat "$marker" 2>/dev/null)" = "$version" ]; then
  echo "kafka $version: already installed at $dest"; exit 0
fi
central=${MAVEN_CENTRAL_URL:-https://repo1.maven.org/maven2}
# The binding must match the log4j-core the broker depends on (kafka-server's pom).
log4j=$(curl -fsSL --retry 3 "$central/org/apache/kafka/kafka-server/$version/kafka-server-$version.pom" |
  grep -A1 '<artifactId>log4j-core</artifactId>' | sed -n 's:.*<version>\(.*\)</version>.*:\1:p')
[ -n "$log4j" ] || { echo "kafka: cannot read log4j-core's version from kafka-server's pom" >&2; exit 1; }
echo "kafka $version: resolving jars from Maven Central (log4j $log4j)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$dest.tmp"' EXIT
dep() { echo "<dependency><groupId>$1</groupId><artifactId>$2</artifactId><version>$3</version>${4:-}</dependency>"; }
no_connect='<exclusions><exclusion><groupId>org.apache.kafka</groupId>
      <artifactId>connect-runtime</artifactId></exclusion></exclusions>'
cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.support-inbox</groupId><artifactId>kafka-libs</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    $(dep org.apache.kafka kafka_2.13 "$version")
    $(dep org.apache.kafka kafka-tools "$version" "$no_connect")
    $(dep org.apache.logging.log4j log4j-slf4j-impl "$log4j")
  </dependencies>
</project>
EOF
rm -rf "$dest.tmp"
# The plugin is pinned: unpinned, Maven picks whatever is newest in the repo's metadata. Output
# is only shown on failure: Debian's Maven 3.8 prints stray ANSI resets even with -q -B.
mvn -q -B -f "$tmp/pom.xml" -Dmaven.repo.local="$(dirname "$dest")/m2" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$dest.tmp/libs" >"$tmp/mvn.log" 2>&1 ||
  { sed 's/\x1b\[[0-9;]*m//g' "$tmp/mvn.log" >&2; exit 1; }
echo "$version" >"$dest.tmp/.installed"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
jars=$(find "$dest/libs" -name '*.jar' | wc -l)
echo "kafka $version: installed $dest ($jars jars, $(du -sm "$dest" | cut -f1) MB)"
