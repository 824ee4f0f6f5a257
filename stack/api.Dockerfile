# The API image: built from the repository root (docker build -f stack/api.Dockerfile --build-arg GIT_SHA=$(git rev-parse HEAD) .)
FROM node:24.11.1-alpine3.22 AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.api.json ./
RUN npm ci --no-audit --no-fund
COPY lib lib
COPY spool spool
COPY api api
RUN npx tsc -p tsconfig.api.json

FROM node:24.11.1-alpine3.22
ENV NODE_ENV=production
WORKDIR /app
# uid/gid 1011 = group app, which owns the spool on every node
RUN addgroup -g 1011 app && adduser -S -D -H -u 1011 -G app app
# the API's own dependency set (api/package.json): no octokit, execa or yaml of the watcher's
COPY api/package.json api/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
ARG GIT_SHA=""
ENV GIT_SHA=${GIT_SHA}
USER 1011:1011
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/api/main.js"]
