# The API image: built from the repository root (docker build -f stack/api.Dockerfile --build-arg GIT_SHA=$(git rev-parse HEAD) .)
# NODE_IMAGE: any image with node, npm and a POSIX sh (the tests build one from this machine's node and
# Debian's static busybox, test/helpers/images.ts, since no registry is reachable there)
ARG NODE_IMAGE=node:24.11.1-alpine3.22
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.api.json ./
RUN npm ci --no-audit --no-fund
COPY lib lib
COPY spool spool
COPY api api
RUN npx tsc -p tsconfig.api.json

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# the API's own dependency set (api/package.json): no octokit, execa or yaml of the watcher's
COPY api/package.json api/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
ARG GIT_SHA=""
ENV GIT_SHA=${GIT_SHA}
# uid/gid 1011 = group app, which owns the spool on every node (numeric: no passwd entry is needed)
USER 1011:1011
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/api/main.js"]
