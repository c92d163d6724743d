# One image for every role: `docker run IMAGE registry` (or product, order, gateway).
# The base image is a build argument so that a test can supply a locally built Node 24 image.
ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Compile TypeScript to JavaScript (dist/) with the dev dependencies; the files under src/ that
#    are not TypeScript (the registry dashboard's) are copied beside it.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would download a second Node binary; the base
# image's Node runs the build. No other dependency has an install script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY deploy/copy-assets.js ./deploy/
COPY src ./src
RUN npm run build

# 2. Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency has an install script, and the project's own
# postinstall (scripts/check-engines.js) is for a developer's install.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# 3. Runtime: compiled JavaScript and production dependencies, as the unprivileged `node` user.
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="microservices-advanced" \
      org.opencontainers.image.description="Service registry, gateway, product and order services (one image; the role is the command)"
ENV NODE_ENV=production \
    HOST=0.0.0.0
# V8's young generation capped at 4 MB semi-spaces (its default grows to 16 MB and stays): less
# memory for every role, idle and under load, for some CPU at saturation; the same flags as
# `npm start` (src/runtime/node-flags.ts says why). Override with -e NODE_OPTIONS=...
ENV NODE_OPTIONS=--max-semi-space-size=4
WORKDIR /app
# Code and dependencies stay owned by root: the service cannot modify them.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY deploy/healthcheck.js ./deploy/
# SQLite files (used when DATABASE_URL is unset) go to DATA_DIR, the one folder `node` owns.
# Made with node rather than mkdir/chown, so the runtime stage needs nothing but Node.
RUN ["node", "-e", "fs.mkdirSync('/app/data', { recursive: true }); fs.chownSync('/app/data', 1000, 1000)"]
ENV DATA_DIR=/app/data
USER node
EXPOSE 8000 8080 8081 8083
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "deploy/healthcheck.js"]
# Exec form: node is PID 1 and receives SIGTERM itself (it deregisters, drains and exits 0);
# a signal that comes while the service is still starting ends it at once (src/cli.ts).
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["registry"]
